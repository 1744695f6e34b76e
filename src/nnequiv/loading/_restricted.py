"""A restricted unpickler for PyTorch files: tensors are rebuilt, nothing else runs.

Only an allow-list of names can be referenced by a pickle: the tensor and parameter rebuild
functions of ``torch._utils`` (replaced here by functions that describe the tensor, never by
torch's own), storage types, dtypes, ``collections.OrderedDict`` and a few builtin containers.
Any other global is refused with one line. TorchScript classes (``__torch__.*``), allowed only
inside TorchScript archives, become :class:`ScriptObject` records holding their pickled
state: their ``__setstate__`` code is never run. Tensors are :class:`TensorRef` descriptions
(storage, element type, offset, shape, stride) checked against their storage and the size
limit; their bytes are read later, one tensor at a time.

The pure-Python unpickler of the standard library is used (its memo is a dict, so a hostile
memo index allocates nothing), and only this module's BUILD runs: it stores the state of a
record and ignores the attributes torch attaches to a state dict.
"""

from __future__ import annotations

import io
import math
import pickle
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnequiv.errors import FormatError, NNEquivError, UnsafeFileError
from nnequiv.loading._dtypes import ELEMENT_TYPES, ElementType
from nnequiv.loading._limits import describe, format_shape, require_within, shown


class ScriptObject:
    """An inert record of a TorchScript object: its class name and its pickled state."""

    qualname = ""

    def __new__(cls, *args):
        record = object.__new__(cls)
        record.args = args
        record.state = None
        return record

    def __init__(self, *args):
        pass


@dataclass(frozen=True)
class StorageType:
    """A storage class named in a pickle (``torch.FloatStorage``; untyped storages hold bytes)."""

    element: ElementType


@dataclass(frozen=True)
class StorageRef:
    """One storage of the file: ``numel`` elements of ``element``, found under ``key``."""

    key: str
    element: ElementType
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * self.element.itemsize


@dataclass(frozen=True)
class TensorRef:
    """A tensor as the file describes it; :meth:`array` reads it from its storage's bytes."""

    storage: StorageRef
    element: ElementType
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self, buffer, byteorder: str = "<") -> np.ndarray:
        """The tensor's values from ``buffer`` (the storage's bytes), as a new array."""
        count = math.prod(self.shape)
        itemsize = self.element.itemsize
        if count == 0:
            return self.element.array(buffer, 0).reshape(self.shape)
        span = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        flat = self.element.array(buffer, span, self.offset * itemsize, byteorder)
        view = np.lib.stride_tricks.as_strided(
            flat, self.shape, [s * flat.itemsize for s in self.stride], writeable=False
        )
        return np.array(view)


class _TensorType:
    """``torch.Tensor`` or ``torch.nn.Parameter`` named as the type of a rebuilt tensor."""


_TENSOR_TYPE = _TensorType()
_STORAGE_TYPES = {
    "Double": "float64",
    "Float": "float32",
    "Half": "float16",
    "BFloat16": "bfloat16",
    "Long": "int64",
    "Int": "int32",
    "Short": "int16",
    "Char": "int8",
    "Byte": "uint8",
    "Bool": "bool",
    "ComplexDouble": "complex128",
    "ComplexFloat": "complex64",
}
_UNSUPPORTED = {
    "_rebuild_qtensor": "quantized tensors",
    "_rebuild_sparse_tensor": "sparse tensors",
    "_rebuild_nested_tensor": "nested tensors",
    "_rebuild_meta_tensor_no_storage": "meta tensors without data",
    "_rebuild_wrapper_subclass": "tensor subclasses",
    "_rebuild_device_tensor_from_numpy": "tensors pickled through NumPy",
    "_rebuild_device_tensor_from_cpu_tensor": "device tensors",
}


def _latin1(text, encoding="latin1"):
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("_codecs.encode is allowed for latin1 bytes only")
    return text.encode("latin1")


def _identity(value, *_):
    return value


def _data_globals() -> dict[str, object]:
    names: dict[str, object] = {
        "collections.OrderedDict": OrderedDict,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.bytearray": bytearray,
        "builtins.complex": complex,
        "_codecs.encode": _latin1,
        "torch.Size": tuple,
        "torch.device": str,
        "torch.serialization._get_layout": str,
        "torch.Tensor": _TENSOR_TYPE,
        "torch._tensor.Tensor": _TENSOR_TYPE,
        "torch.nn.parameter.Parameter": _TENSOR_TYPE,
        "torch.storage.UntypedStorage": StorageType(ELEMENT_TYPES["uint8"]),
        "torch.UntypedStorage": StorageType(ELEMENT_TYPES["uint8"]),
    }
    for prefix, element in _STORAGE_TYPES.items():
        names[f"torch.{prefix}Storage"] = StorageType(ELEMENT_TYPES[element])
    for name, element in ELEMENT_TYPES.items():
        names[f"torch.{name}"] = element
    for name in ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist"):
        names[f"torch.jit._pickle.{name}"] = _identity
    names["torch.jit._pickle.restore_type_tag"] = _identity
    return names


_DATA_GLOBALS = _data_globals()


class _Unpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, label: str, limit: int, storage: Callable, script_classes: bool):
        super().__init__(file, encoding="utf-8")
        self.label = label
        self.limit = limit
        self.storage = storage
        self.script_classes = script_classes
        self.classes: dict[str, type] = {}
        rebuilders = {
            "_rebuild_tensor": self._rebuild_tensor,
            "_rebuild_tensor_v2": self._rebuild_tensor_v2,
            "_rebuild_tensor_v3": self._rebuild_tensor_v3,
            "_rebuild_parameter": _identity,
            "_rebuild_parameter_with_state": _identity,
        }
        self.globals = {
            **_DATA_GLOBALS,
            **{f"torch._utils.{name}": function for name, function in rebuilders.items()},
            "torch._tensor._rebuild_from_type_v2": self._rebuild_from_type_v2,
        }

    def find_class(self, module, name):
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        key = f"{module}.{name}"
        if key in self.globals:
            return self.globals[key]
        if self.script_classes and (module == "__torch__" or module.startswith("__torch__.")):
            return self._script_class(key)
        if module == "torch._utils" and name in _UNSUPPORTED:
            raise FormatError(
                f"{self.label}: holds {_UNSUPPORTED[name]}, which nnequiv does not read"
            )
        raise _refusal(self.label, key)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            kind = shown(pid[0], 40) if isinstance(pid, tuple) and pid else type(pid).__name__
            raise pickle.UnpicklingError(f"unsupported persistent record '{kind}'")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views of the legacy format are not supported")
        if not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError("a storage record without a storage type")
        if not isinstance(key, str) or not _is_count(numel):
            raise pickle.UnpicklingError("a storage record with an invalid key or size")
        reference = StorageRef(key, storage_type.element, numel)
        require_within(self.label, f"storage '{shown(key, 40)}'", reference.nbytes, self.limit)
        return self.storage(reference)

    def _script_class(self, qualname: str) -> type:
        if qualname not in self.classes:
            self.classes[qualname] = type("ScriptObject", (ScriptObject,), {"qualname": qualname})
        return self.classes[qualname]

    def _load_build(self):
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, ScriptObject):
            target.state = state
        elif not isinstance(target, dict):
            raise pickle.UnpicklingError(f"cannot set the state of a {type(target).__name__}")

    dispatch[pickle.BUILD[0]] = _load_build

    def _rebuild_tensor(self, storage, offset, size, stride):
        return self._tensor(
            storage,
            storage.element if isinstance(storage, StorageRef) else None,
            offset,
            size,
            stride,
        )

    def _rebuild_tensor_v2(self, storage, offset, size, stride, *_flags):
        return self._rebuild_tensor(storage, offset, size, stride)

    def _rebuild_tensor_v3(self, storage, offset, size, stride, _grad, _hooks, dtype, *_meta):
        if not isinstance(dtype, ElementType):
            raise pickle.UnpicklingError("a tensor with an unknown dtype")
        return self._tensor(storage, dtype, offset, size, stride)

    def _rebuild_from_type_v2(self, function, new_type, args, _state):
        if new_type is not _TENSOR_TYPE or not callable(function):
            raise pickle.UnpicklingError("a tensor of an unsupported type")
        return function(*args)

    def _tensor(self, storage, element, offset, size, stride) -> TensorRef:
        if not isinstance(storage, StorageRef) or element is None:
            raise pickle.UnpicklingError("a tensor without a storage")
        shape, strides = tuple(size), tuple(stride)
        if not (
            _is_count(offset)
            and len(shape) == len(strides)
            and all(map(_is_count, shape + strides))
        ):
            raise pickle.UnpicklingError("a tensor with an invalid offset, shape or stride")
        count = math.prod(shape)
        require_within(
            self.label, f"a tensor ({format_shape(shape)})", count * element.itemsize, self.limit
        )
        capacity = storage.nbytes // element.itemsize
        if count and offset + sum((n - 1) * s for n, s in zip(shape, strides)) >= capacity:
            raise pickle.UnpicklingError(
                f"a tensor ({format_shape(shape)}) reaches past its storage"
            )
        return TensorRef(storage, element, offset, shape, strides)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _refusal(label: str, key: str) -> UnsafeFileError:
    name = shown(key, 80)
    if key.rsplit(".", 1)[-1][:1].isupper():
        return UnsafeFileError(
            f"{label}: refused: the pickle holds an object of class {name} (a whole model "
            "saved with torch.save(model)?); nnequiv never runs code from a file, so save "
            "model.state_dict() instead, or pass trust_code=True (--trust-code) if you trust it"
        )
    return UnsafeFileError(
        f"{label}: refused: the pickle calls {name}; nnequiv never runs code from a file"
    )


def unpickle(
    file,
    label: str,
    limit: int,
    storage: Callable[[StorageRef], object] = lambda reference: reference,
    script_classes: bool = False,
):
    """The object of one pickle read from ``file`` (bytes or a binary stream), restricted as
    the module describes; ``storage`` maps each storage record to what tensors refer to."""
    stream = io.BytesIO(file) if isinstance(file, (bytes, bytearray)) else file
    try:
        return _Unpickler(stream, label, limit, storage, script_classes).load()
    except NNEquivError:
        raise
    except Exception as exc:
        raise FormatError(
            f"{label}: not a readable PyTorch file (corrupt pickle: {describe(exc)})"
        ) from exc
