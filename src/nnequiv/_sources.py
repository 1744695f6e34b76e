"""What an analysis reads: a network's weights, or a connectome's Mixed Matrix Ensemble, as
one :class:`~nnequiv.loading.WeightSource`."""

from __future__ import annotations

from nnequiv.connectomes import connectome_weights, is_connectome
from nnequiv.errors import InputError
from nnequiv.loading import WeightSource, apply_limits, open_weights
from nnequiv.settings import ConnectomeOptions, LoadOptions

__all__ = ["open_source"]


def open_source(
    source,
    load: LoadOptions,
    connectome: ConnectomeOptions,
    connectome_given=frozenset(),
    seed: int = 0,
) -> WeightSource:
    """The tensors an analysis reads from ``source``.

    A connectome (see :func:`nnequiv.connectomes.is_connectome`) becomes its Mixed Matrix
    Ensemble, drawn with ``seed``; anything else is opened as a network with ``load``.
    Connectome options given explicitly (``connectome_given``) for a network are refused.
    """
    apply_limits(load.limits)  # in this process, which may be a worker of a set
    if is_connectome(source):
        return connectome_weights(source, connectome, seed, load.max_tensor_bytes)
    if connectome_given:
        label = getattr(source, "label", source) if not isinstance(source, dict) else "<dict>"
        raise InputError(
            f"{label}: {', '.join(sorted(connectome_given))} apply to connectomes only, "
            "and this is a network"
        )
    return open_weights(
        source, load.layout, trust_code=load.trust_code, max_tensor_bytes=load.max_tensor_bytes
    )
