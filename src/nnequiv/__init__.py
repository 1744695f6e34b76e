"""nnequiv: equivalence of neural networks from their weights via conjugate circular
ensembles (M. Süzen, arXiv:2006.13687). The method is documented in docs/method.md."""

from nnequiv.ensembles import (
    cayley_spectrum,
    circular_eigenphases,
    circular_matrices,
    conjugate_ensemble,
)
from nnequiv.equivalence import (
    Analysis,
    Classes,
    Identification,
    Settings,
    Verdict,
    analyze,
    cluster,
    compare,
    identify,
)
from nnequiv.layers import layer_matrices
from nnequiv.loading import open_weights
from nnequiv.spectra import LayerSpectrum, layer_spectra, normalize_spectrum

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "Classes",
    "Identification",
    "LayerSpectrum",
    "Settings",
    "Verdict",
    "analyze",
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
