"""ONNX models: initializers and weight-carrying Constant nodes."""

from __future__ import annotations

from pathlib import Path

from nnequiv.errors import FormatError, MissingDependencyError


def _iter_onnx(path: Path):
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise MissingDependencyError("onnx", "onnx", f"reading {path}") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise FormatError(f"{path}: not a readable ONNX model ({exc})") from exc
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for tensor in graph.initializer:
            yield tensor.name, numpy_helper.to_array(tensor)
        for node in graph.node:
            for attribute in node.attribute:
                if node.op_type == "Constant" and attribute.name == "value":
                    yield (node.output[0] or node.name), numpy_helper.to_array(attribute.t)
                graphs.extend(attribute.graphs)
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
