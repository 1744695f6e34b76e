"""Function-preserving rewrites of a state dict, as deployment tools make them: BatchNorm
folding, other kernel layouts, permuted neurons, shuffled layer order."""

from __future__ import annotations

import numpy as np

BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")


def fold_batchnorm(state: dict, eps: float = 1e-5) -> dict:
    """Fold every BatchNorm into the layer before it, as ONNX and TFLite exporters do: the
    weight's output channels scaled by gamma / sqrt(var + eps), the BatchNorm tensors gone.

    A BatchNorm is a group ``X.weight, X.bias, X.running_mean, X.running_var`` of 1-D
    tensors; its layer is the nearest earlier tensor with ndim >= 2 whose output axis (axis
    0, PyTorch layout) has the BatchNorm's size. Returns the folded state and the count.
    """
    names = list(state)
    folded = {k: np.array(v, copy=True) for k, v in state.items()}
    count = 0
    for index, name in enumerate(names):
        if not name.endswith(".running_var"):
            continue
        prefix = name[: -len("running_var")]
        group = [prefix + s for s in BN_SUFFIXES]
        if not all(k in state for k in group):
            continue
        gamma, var = state[prefix + "weight"], state[prefix + "running_var"]
        scale = gamma / np.sqrt(var + eps)
        for previous in reversed(names[:index]):
            w = folded.get(previous)
            if w is not None and w.ndim >= 2 and w.shape[0] == scale.size:
                folded[previous] = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
                break
        else:
            continue
        for k in group:
            folded.pop(k)
        count += 1
    return folded, count


def to_hwio(state: dict) -> dict:
    """TensorFlow layout: kernels kh x kw x in x out (depthwise kh x kw x C x 1), dense
    in x out."""
    out = {}
    for name, w in state.items():
        if w.ndim >= 3:
            w = np.moveaxis(w, (0, 1), (-1, -2))
        elif w.ndim == 2:
            w = w.T
        out[name] = np.ascontiguousarray(w)
    return out


def to_ohwi(state: dict) -> dict:
    """TFLite layout: kernels out x kh x kw x in (depthwise 1 x kh x kw x C)."""
    out = {}
    for name, w in state.items():
        if w.ndim >= 3 and w.shape[1] == 1 and w.shape[0] > 1:  # depthwise C x 1 x kh x kw
            w = np.moveaxis(w, 0, -1)
        elif w.ndim >= 3:
            w = np.moveaxis(w, 1, -1)
        out[name] = np.ascontiguousarray(w)
    return out


def reversed_order(state: dict) -> dict:
    """The same tensors, listed in the opposite order."""
    return dict(reversed(list(state.items())))
