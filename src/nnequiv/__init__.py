"""nnequiv: equivalence of neural networks from their weights via conjugate circular
ensembles (M. Süzen, arXiv:2006.13687). The method is documented in docs/method.md."""

from nnequiv import errors
from nnequiv._pipeline import analyze
from nnequiv._version import __version__
from nnequiv.analysis import Analysis, LayerRecord
from nnequiv.calibration import Calibration, load_calibration
from nnequiv.ensembles import (
    cayley_spectrum,
    circular_eigenphases,
    circular_matrices,
    conjugate_ensemble,
)
from nnequiv.equivalence import analyze_all, calibrate, cluster, compare, identify
from nnequiv.errors import *  # noqa: F403 (the names of errors.__all__, exported below)
from nnequiv.layers import layer_matrices
from nnequiv.loading import open_weights
from nnequiv.results import Classes, Identification, Match, Verdict
from nnequiv.settings import DistanceSettings, Settings
from nnequiv.spectra import LayerSpectrum, layer_spectra, normalize_spectrum

__all__ = [
    "Analysis",
    "Calibration",
    "calibrate",
    "load_calibration",
    "Classes",
    "DistanceSettings",
    "Identification",
    "LayerRecord",
    "LayerSpectrum",
    "Match",
    "Settings",
    "Verdict",
    "__version__",
    "errors",
    *errors.__all__,
    "analyze",
    "analyze_all",
    "cayley_spectrum",
    "circular_eigenphases",
    "circular_matrices",
    "cluster",
    "compare",
    "conjugate_ensemble",
    "identify",
    "layer_matrices",
    "layer_spectra",
    "normalize_spectrum",
    "open_weights",
]
