"""ONNX models: initializers and weight-carrying Constant nodes, in every subgraph.

Quantized weights are dequantized as the runtime does, from data alone: an integer (or 8-bit
float) initializer that a ``DequantizeLinear``, ``QLinearConv``, ``QLinearMatMul``,
``ConvInteger``, ``MatMulInteger`` or ``DynamicQuantizeLSTM`` node reads as its quantized
input becomes the float32 tensor ``(q - zero_point) * scale``, with a scale and zero point per
tensor, per axis (per output channel) or per block, taken from the node's other inputs.
``ConvInteger`` and ``MatMulInteger`` carry no scale: the weight's scale is the initializer
``<name>_scale`` beside ``<name>_quantized`` (the quantizer's naming), else the float factor
the node's output is multiplied by, else 1. The tensor is named without its ``_quantized``
suffix; the scales and zero points it was dequantized with are left out (listed as skipped).
Nothing of the graph is run.

Each tensor's declared size (dims x element size) is checked before it is converted.
External data is read by nnequiv itself: its location is taken relative to the model file's
directory and may not leave it (no absolute path, no ``..``), the file must be a regular
file, and the declared offset and length must lie inside it and match the tensor's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnequiv._optional import optional_module
from nnequiv.errors import FormatError, UnsafeFileError
from nnequiv.loading._limits import (
    format_shape,
    linked_inside,
    open_regular,
    reading,
    shown,
    tensor_nbytes,
)
from nnequiv.loading._source import Dropped

#: Why a quantized weight's scale or zero point is not a layer.
QUANTIZATION_PARAMETER = "a quantization scale or zero point, not a layer of the network"
#: ONNX element types NumPy lacks, widened to float32 (through ml_dtypes) to be analysed.
_WIDENED = {"bfloat16", "float8_e4m3fn", "float8_e5m2"}
#: Element types packed two to a byte.
_PACKED_4BIT = {"int4", "uint4", "float4_e2m1fn"}


def iter_onnx(path: Path, limit: int) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, array)`` of every initializer and Constant-node tensor, quantized weights
    dequantized (their scales and zero points as :class:`Dropped`)."""
    onnx = optional_module("onnx", "onnx", f"reading {path}")
    numpy_helper = optional_module("onnx.numpy_helper", "onnx", f"reading {path}")
    label = str(path)
    with open_regular(path) as handle:
        with reading(label, "not a readable ONNX model"):
            model = onnx.load_model_from_string(handle.read())
    tensors = list(_weight_tensors(model, label))
    by_name = dict(reversed(tensors))  # the first tensor of a name wins
    plans = _quantized_weights(model, by_name, label)

    def value(name: str) -> np.ndarray:
        return _to_array(by_name[name], name, path, limit, onnx, numpy_helper)

    parameters = {n for plan in plans.values() for n in (plan.scale, plan.zero_point) if n}
    for name, tensor in tensors:
        if name in parameters and name not in plans:
            yield name, Dropped(tuple(tensor.dims), QUANTIZATION_PARAMETER)
            continue
        array = _to_array(tensor, name, path, limit, onnx, numpy_helper)
        plan = plans.get(name)
        if plan is not None and array.dtype.kind in "iuf":
            yield plan.label, _dequantized(array, plan, value, label)
        else:
            yield name, array


@dataclass(frozen=True)
class _Quantized:
    """How a quantized weight becomes floats: its scale and zero point (tensor names, or
    None: 1 and 0), the axis they run along when they are 1-D, and the block size of a
    blocked scale (0: none)."""

    label: str
    scale: str | None
    zero_point: str | None
    axis: int = 0
    block: int = 0


#: Node type -> ``(weight input, scale input, zero point input, axis)`` for each weight it
#: may hold; a scale input of None means the node has none (found beside it instead).
_QUANTIZED_INPUTS = {
    "DequantizeLinear": ((0, 1, 2, None),),
    "QLinearConv": ((3, 4, 5, 0),),
    "QLinearMatMul": ((0, 1, 2, 0), (3, 4, 5, -1)),
    "ConvInteger": ((1, None, 3, 0),),
    "MatMulInteger": ((0, None, 2, 0), (1, None, 3, -1)),
    "DynamicQuantizeLSTM": ((1, 8, 9, 0), (2, 10, 11, 0)),
}
#: Nodes that pass an integer product on unscaled, before it is multiplied by its scale.
_UNSCALED_STEPS = {"Cast", "Add", "Reshape", "Identity"}


def _quantized_weights(model, by_name: dict, label: str) -> dict[str, _Quantized]:
    """The quantized weights among the tensors ``by_name``, and how to dequantize each."""
    plans: dict[str, _Quantized] = {}
    with reading(label, "not a readable ONNX model"):
        graphs = [model.graph]
        nodes = []
        while graphs:
            graph = graphs.pop()
            nodes += list(graph.node)
            for node in graph.node:
                for attribute in node.attribute:
                    graphs.extend(attribute.graphs)
                    if attribute.HasField("g"):
                        graphs.append(attribute.g)
        consumers: dict[str, list] = {}
        producers = {}
        for node in nodes:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
            for name in node.output:
                producers[name] = node
        for node in nodes:
            for weight, scale, zero, axis in _QUANTIZED_INPUTS.get(node.op_type, ()):
                inputs = list(node.input)
                name = inputs[weight] if weight < len(inputs) else ""
                if name not in by_name or name in plans:
                    continue
                attributes = {a.name: a for a in node.attribute}
                block = 0
                if axis is None:  # DequantizeLinear: its axis attribute, 1 by default
                    axis = attributes["axis"].i if "axis" in attributes else 1
                    block = attributes["block_size"].i if "block_size" in attributes else 0
                scale_name = inputs[scale] if scale is not None and scale < len(inputs) else None
                if scale is None:
                    scale_name = _beside_scale(name, node, by_name, consumers, producers)
                zero_name = inputs[zero] if zero < len(inputs) and inputs[zero] else None
                plans[name] = _Quantized(
                    name.removesuffix("_quantized") or name,
                    scale_name if scale_name in by_name else None,
                    zero_name if zero_name in by_name else None,
                    axis,
                    block,
                )
    return plans


def _beside_scale(weight: str, node, by_name: dict, consumers: dict, producers: dict):
    """The scale of a ``ConvInteger``/``MatMulInteger`` weight: the initializer named as the
    quantizer names it, else the constant factor of the ``Mul`` its (cast) output goes to,
    or of the ``Mul`` that factor comes from (input scale times weight scale)."""
    named = weight.removesuffix("_quantized") + "_scale"
    if weight.endswith("_quantized") and named in by_name:
        return named
    output = node.output[0] if node.output else ""
    for _ in range(4):
        following = consumers.get(output, [])
        if len(following) != 1:
            return None
        step = following[0]
        if step.op_type == "Mul":
            factors = [name for name in step.input if name != output]
            for factor in factors:
                if factor in by_name:
                    return factor
                source = producers.get(factor)
                if source is not None and source.op_type == "Mul":
                    constant = [name for name in source.input if name in by_name]
                    if len(constant) == 1:
                        return constant[0]
            return None
        if step.op_type not in _UNSCALED_STEPS or not step.output:
            return None
        output = step.output[0]
    return None


def _dequantized(q: np.ndarray, plan: _Quantized, value, label: str) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32, the scale and zero point broadcast per
    tensor, along ``plan.axis`` or per block."""
    result = q.astype(np.float32)
    for name, combine in ((plan.zero_point, np.subtract), (plan.scale, np.multiply)):
        if name is None:
            continue
        factor = value(name).astype(np.float32)
        if factor.size == 1:
            result = combine(result, factor.reshape(()), out=result)
            continue
        result = combine(result, _broadcast(factor, q.shape, plan, label), out=result)
    return result


def _broadcast(factor: np.ndarray, shape: tuple, plan: _Quantized, label: str) -> np.ndarray:
    """A per-axis or per-block factor shaped to broadcast against a tensor of ``shape``."""
    what = f"{label}: quantized tensor '{shown(plan.label)}'"
    ndim = len(shape)
    if ndim == 0 or not -ndim <= plan.axis < ndim:
        raise FormatError(f"{what} has its quantization axis {plan.axis} outside its shape")
    axis = plan.axis % ndim
    if factor.ndim == 1 and factor.shape[0] == shape[axis]:
        return factor.reshape([-1 if i == axis else 1 for i in range(ndim)])
    blocks = -(-shape[axis] // plan.block) if plan.block > 0 else 0
    fits = [
        n == (blocks if i == axis else size) for i, (n, size) in enumerate(zip(factor.shape, shape))
    ]
    if factor.ndim == ndim and blocks and all(fits):  # one value per block along the axis
        return np.take(factor, np.arange(shape[axis]) // plan.block, axis=axis)
    raise FormatError(
        f"{what} ({format_shape(shape)}) has a scale or zero point of shape "
        f"{format_shape(factor.shape)} that fits neither per tensor nor along axis {axis}"
    )


def _weight_tensors(model, label: str):
    with reading(label, "not a readable ONNX model"):
        graphs = [model.graph]
        while graphs:
            graph = graphs.pop()
            for tensor in graph.initializer:
                yield tensor.name, tensor
            for node in graph.node:
                for attribute in node.attribute:
                    if node.op_type == "Constant" and attribute.name == "value":
                        yield (node.output[0] if node.output else node.name), attribute.t
                    graphs.extend(attribute.graphs)
                    if attribute.HasField("g"):
                        graphs.append(attribute.g)


def _to_array(tensor, name: str, path: Path, limit: int, onnx, numpy_helper) -> np.ndarray:
    label = str(path)
    what = f"tensor '{shown(name)}'"
    with reading(label, f"{what} has an unknown element type", (KeyError, ValueError)):
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    dims = list(tensor.dims)
    if dtype.name in _PACKED_4BIT and all(d >= 0 for d in dims):
        stored = tensor_nbytes(label, name, [-(-math.prod(dims) // 2)], 1, limit)
    else:
        stored = tensor_nbytes(label, name, dims, dtype.itemsize, limit)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        tensor = _with_external_data(tensor, name, path, stored, onnx)
    with reading(label, f"{what} cannot be decoded"):
        array = numpy_helper.to_array(tensor)
        if array.dtype.name in _WIDENED:
            array = array.astype(np.float32)
    return array


def _with_external_data(tensor, name: str, path: Path, stored: int, onnx):
    """A copy of ``tensor`` holding its ``stored`` external bytes as raw data."""
    what = f"{path}: tensor '{shown(name)}'"
    entries = {entry.key: entry.value for entry in tensor.external_data}
    location = entries.get("location", "")
    if not location:
        raise FormatError(f"{what} has external data without a location")
    target = linked_inside(path.parent, location)
    if target is None:
        raise UnsafeFileError(
            f"{what} names external data outside the model's directory "
            f"('{shown(location)}'); refused"
        )
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError:
        raise FormatError(f"{what} has a non-integer external data offset or length") from None
    with open_regular(target, f"{what}: external data '{shown(location)}'") as handle:
        size = handle.seek(0, 2)
        available = size - offset if length is None else length
        if offset < 0 or available < 0 or offset + available > size:
            raise FormatError(
                f"{what}: external data [{offset}, {offset + available}) lies outside "
                f"'{shown(location)}' ({size} bytes)"
            )
        if available != stored:
            raise FormatError(
                f"{what}: external data holds {available} bytes, its dims and type need {stored}"
            )
        handle.seek(offset)
        raw = handle.read(stored)
    loaded = onnx.TensorProto()
    loaded.CopyFrom(tensor)
    loaded.raw_data = raw
    loaded.data_location = onnx.TensorProto.DEFAULT
    del loaded.external_data[:]
    return loaded
