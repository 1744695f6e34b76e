"""Demo: layer spectra of small generated networks (replaced by the full job as it lands)."""

import argparse

import numpy as np

from nnequiv.spectra import layer_spectra, normalize_spectrum

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="demo-output")
args = parser.parse_args()
rng = np.random.default_rng(0)
state = {f"fc{i}.weight": rng.standard_normal((64, 64)) for i in range(3)}
for spectrum in layer_spectra(state):
    values = normalize_spectrum(spectrum.eigenvalues)
    print(f"{spectrum.name:12s} {spectrum.matrix_shape} max/median = {values.max():.2f}")
