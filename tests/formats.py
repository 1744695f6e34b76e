"""Writers of small weight files in every format the tests read (shared by the format,
safety and fuzz tests)."""

from __future__ import annotations

import json
import zipfile

import numpy as np


def out_last(array):
    """The TensorFlow layout of a PyTorch tensor: kernels kh x kw x in x out, dense in x out."""
    if array.ndim >= 3:
        return np.moveaxis(array, (0, 1), (-1, -2))
    if array.ndim == 2:
        return array.T
    return array


def save_safetensors(state, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))


def save_sharded(state, directory):
    directory.mkdir()
    names = list(state)
    half = len(names) // 2
    weight_map = {}
    for index, part in enumerate([names[:half], names[half:]]):
        shard = f"model-{index + 1:05d}-of-00002.safetensors"
        save_safetensors({k: state[k] for k in part}, directory / shard)
        weight_map.update({k: shard for k in part})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def save_onnx(state, path):
    """An ONNX graph carrying the weights as initializers and as Constant nodes."""
    import onnx
    from onnx import helper, numpy_helper

    names = list(state)
    initializers = [numpy_helper.from_array(state[k], k) for k in names[::2]]
    nodes = [
        helper.make_node("Constant", [], [k], value=numpy_helper.from_array(state[k], k))
        for k in names[1::2]
    ]
    out = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    nodes.append(helper.make_node("Identity", [names[0]], ["y"]))
    graph = helper.make_graph(nodes, "g", [], [out], initializer=initializers)
    onnx.save(helper.make_model(graph), str(path))


def save_h5(state, path):
    import h5py

    with h5py.File(path, "w") as handle:
        for name, array in state.items():
            handle.create_dataset(name.replace(".", "/") + ":0", data=out_last(array))


def save_keras(state, path, tmp_path):
    h5 = tmp_path / "model.weights.h5"
    save_h5(state, h5)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.write(h5, "model.weights.h5")
