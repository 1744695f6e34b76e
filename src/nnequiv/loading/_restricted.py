"""A restricted unpickler for PyTorch files and pickled NumPy arrays: tensors and arrays are
rebuilt, nothing from the file is imported or called.

A name a pickle references is one of:

* an allowed name: the tensor and parameter rebuild functions of ``torch._utils`` (replaced
  here by functions that describe the tensor, never torch's own), storage types, dtypes,
  ``collections.OrderedDict``, a few builtin containers, and NumPy's array, dtype and scalar
  reconstructors (replaced by functions that build plain numeric arrays from the bytes);
* a class of any other module (``omegaconf.dictconfig.DictConfig``, the model's own
  ``torch.nn`` modules, ``argparse.Namespace``): an inert :class:`Placeholder` that records
  the arguments and state the pickle gives it. Nothing is imported: the placeholder is a
  fresh class carrying the name, and its methods only store values;
* a function (a lowercase name) of any other module: a reference that may be stored but not
  called: a pickle that calls it is refused, as is any name of a module that runs code
  (``os``, ``subprocess``, ``builtins``, ...);
* TorchScript classes (``__torch__.*``, allowed only inside TorchScript archives) become
  :class:`ScriptObject` records holding their pickled state: their ``__setstate__`` code is
  never run.

Tensors are :class:`TensorRef` descriptions (storage, element type, offset, shape, stride)
checked against their storage and the size limit; their bytes are read later, one tensor at a
time.

The pure-Python unpickler of the standard library is used (a stack machine without
recursion; its memo is a dict, so a hostile memo index allocates nothing), and only this
module's BUILD runs: it stores the state of a record and ignores the attributes torch
attaches to a state dict. Dict keys and set members must be flat values (strings, numbers,
None, bytes, tuples of those), so no nested structure is ever hashed, and the number of
objects a pickle builds is bounded (``LIMITS.max_pickle_objects``).
"""

from __future__ import annotations

import io
import math
import pickle
import re
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnequiv.errors import FormatError, NNEquivError, UnsafeFileError
from nnequiv.loading._dtypes import ELEMENT_TYPES, ElementType
from nnequiv.loading._limits import (
    LIMITS,
    describe,
    format_shape,
    require_count,
    require_within,
    shown,
)

#: Modules whose names are refused outright, class or function: they run code.
CODE_MODULES = frozenset(
    (
        "os posix nt subprocess sys builtins __builtin__ importlib runpy ctypes pickle _pickle "
        "marshal shutil socket pty code codeop webbrowser multiprocessing io _io tempfile "
        "signal types inspect threading _thread asyncio operator functools pdb bdb "
        "pydoc timeit trace cProfile profile gc weakref ast compileall py_compile zipimport "
        "pkgutil site sysconfig platform glob fileinput linecache http urllib ftplib smtplib "
        "telnetlib xmlrpc ssl select selectors mmap fcntl resource ptyprocess pexpect dill "
        "cloudpickle joblib torch.hub torch.ops torch._ops torch.jit torch.package "
        "torch.serialization torch.storage torch.multiprocessing torch.distributed numpy.lib "
        "numpy.testing numpy.f2py numpy.distutils"
    ).split()
)


class Placeholder:
    """An inert stand-in for an object of a class a pickle names: the class is never
    imported, nothing of it runs. ``qualname`` is the name, ``args`` what the pickle passed
    to create the object, ``state`` what it set as its state, ``items`` and ``members`` what
    it stored into it as into a dict or a list."""

    qualname = ""

    def __new__(cls, *args, **kwargs):
        record = object.__new__(cls)
        record.args = args + ((kwargs,) if kwargs else ())
        record.state = None
        record.items = {}
        record.members = []
        return record

    def __init__(self, *args, **kwargs):
        pass

    def __setitem__(self, key, value):
        _require_flat(key)
        self.items[key] = value

    def append(self, value):
        self.members.append(value)

    def extend(self, values):
        self.members.extend(values)

    def __repr__(self):
        return f"<placeholder {self.qualname}>"


class FunctionRef:
    """A function a pickle names but may not call (stored as a value, e.g. an activation in a
    model's attributes)."""

    def __init__(self, qualname: str, label: str):
        self.qualname, self.label = qualname, label

    def __call__(self, *args, **kwargs):
        raise _refusal(self.label, self.qualname)

    def __repr__(self):
        return f"<function {self.qualname}>"


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


def _device(kind, index=None):
    """``torch.device`` as its text (``'cpu'``, ``'cuda:0'``): a whole model pickles the
    device its tensors lived on as ``torch.device('cuda', 0)``."""
    if not isinstance(kind, str) or not (index is None or _is_count(index)):
        raise pickle.UnpicklingError("a torch.device with an invalid type or index")
    return kind if index is None else f"{shown(kind, 40)}:{index}"


_NUMERIC_DESCR = re.compile(r"[<>|=]?(?:b1|[iu][1248]|f[248]|c(?:8|16))")


class _NDArrayType:
    """``numpy.ndarray`` named as the type of a pickled array."""


_NDARRAY = _NDArrayType()


class _DTypeRecord:
    """A pickled ``numpy.dtype``: its type code, and the byte order its state sets."""

    def __init__(self, code, *_):
        if not isinstance(code, str):
            raise pickle.UnpicklingError("a NumPy dtype without a type code")
        self.code, self.byteorder = code, "="

    def set_state(self, state) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]

    @property
    def is_object(self) -> bool:
        return self.code.startswith("O")

    @property
    def is_numeric(self) -> bool:
        return bool(_NUMERIC_DESCR.fullmatch(self.code))

    def dtype(self) -> np.dtype:
        order = "<" if self.byteorder == "|" else self.byteorder
        return np.dtype(self.code).newbyteorder(order)


class _ArrayRecord:
    """A pickled NumPy array being rebuilt (``_reconstruct``, then its state)."""

    def __init__(self, subtype, *_):
        if subtype is not _NDARRAY:
            raise pickle.UnpicklingError("a NumPy array of an unsupported type")
        self.value = None
        self.memo_keys: list = []


def _data_globals() -> dict[str, object]:
    names: dict[str, object] = {
        "collections.OrderedDict": OrderedDict,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.bytearray": bytearray,
        "builtins.complex": complex,
        "_codecs.encode": _latin1,
        "torch.Size": tuple,
        "torch.device": _device,
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
    for builtin in (object, dict, list, tuple, int, float, str, bool, slice):
        names[f"builtins.{builtin.__name__}"] = builtin
    names["numpy.ndarray"] = _NDARRAY
    for module in ("numpy.core", "numpy._core"):
        names[f"{module}.multiarray._reconstruct"] = _ArrayRecord
        names[f"{module}.numeric._frombuffer"] = None  # set per unpickler (needs the limit)
        names[f"{module}.multiarray.scalar"] = None
    names["numpy.dtype"] = _DTypeRecord
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
            "copyreg._reconstructor": self._reconstructor,
            "builtins.set": self._set,
            "builtins.bytearray": _bytearray,
            "builtins.frozenset": self._frozenset,
        }
        for module in ("numpy.core", "numpy._core"):
            self.globals[f"{module}.numeric._frombuffer"] = self._frombuffer
            self.globals[f"{module}.multiarray.scalar"] = self._scalar
        self.placeholders: dict[str, type] = {}
        self.built = 0

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
        if _runs_code(module) or not _is_name(module, name):
            raise _refusal(self.label, key)
        if name[:1].isupper():
            return self._placeholder(key)
        return FunctionRef(key, self.label)

    def _placeholder(self, qualname: str) -> type:
        if qualname not in self.placeholders:
            self.placeholders[qualname] = type(
                "Placeholder", (Placeholder,), {"qualname": qualname}
            )
        return self.placeholders[qualname]

    def _count(self) -> None:
        self.built += 1
        if self.built > LIMITS.max_pickle_objects:
            require_count(self.label, "the pickle builds objects", self.built, "max_pickle_objects")

    def _reconstructor(self, cls, base, state=None):
        placeholder = isinstance(cls, type) and issubclass(cls, Placeholder)
        if not placeholder or base not in (object, dict, list):
            raise pickle.UnpicklingError("copyreg._reconstructor of an unsupported type")
        return cls() if state is None else cls(state)

    def _set(self, items=()):
        return set(_flat_members(items))

    def _frozenset(self, items=()):
        return frozenset(_flat_members(items))

    def _frombuffer(self, buffer, dtype, shape, order="C"):
        if not isinstance(dtype, _DTypeRecord) or not dtype.is_numeric:
            raise pickle.UnpicklingError("a NumPy buffer of an unsupported dtype")
        return self._array_from(buffer, dtype.dtype(), shape, order == "F")

    def _scalar(self, dtype, data=None):
        if not isinstance(dtype, _DTypeRecord):
            raise pickle.UnpicklingError("a NumPy scalar without a dtype")
        if not dtype.is_numeric:
            return data if dtype.is_object else None
        return self._array_from(data, dtype.dtype(), (), False)[()]

    def _array_from(self, raw, dtype: np.dtype, shape, fortran: bool) -> np.ndarray:
        if isinstance(raw, str):
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("a NumPy array without raw bytes")
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if not all(map(_is_count, shape)):
            raise pickle.UnpicklingError("a NumPy array with an invalid shape")
        count = math.prod(shape)
        require_within(
            self.label, f"an array ({format_shape(shape)})", count * dtype.itemsize, self.limit
        )
        if len(raw) != count * dtype.itemsize:
            raise pickle.UnpicklingError(
                f"a NumPy array ({format_shape(shape)}) whose bytes do not match its shape"
            )
        self._count()
        flat = np.frombuffer(bytes(raw), dtype=dtype, count=count)
        return flat.reshape(shape, order="F" if fortran else "C")

    def _build_array(self, record: _ArrayRecord, state) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("a NumPy array with an invalid state")
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DTypeRecord):
            raise pickle.UnpicklingError("a NumPy array without a dtype")
        if dtype.is_object:
            if not isinstance(raw, list) or not isinstance(shape, tuple):
                raise pickle.UnpicklingError("an object array with an invalid state")
            record.value = raw[0] if shape == () and len(raw) == 1 else raw
        elif dtype.is_numeric:
            record.value = self._array_from(raw, dtype.dtype(), shape, bool(fortran))
        for key in record.memo_keys:  # later references to the array get its value
            self.memo[key] = record.value

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            # legacy torch.save(model): a module class with its source text (never run)
            if isinstance(pid[1], type) and issubclass(pid[1], Placeholder):
                return pid[1]
            raise pickle.UnpicklingError("a module record without a class")
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
        if isinstance(target, (ScriptObject, Placeholder)):
            target.state = state
        elif isinstance(target, _DTypeRecord):
            target.set_state(state)
        elif isinstance(target, _ArrayRecord):
            self._build_array(target, state)
            self.stack[-1] = target.value
        elif not isinstance(target, dict):
            raise pickle.UnpicklingError(f"cannot set the state of a {type(target).__name__}")

    dispatch[pickle.BUILD[0]] = _load_build

    def _load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        _require_flat(key)
        self.stack[-1][key] = value

    dispatch[pickle.SETITEM[0]] = _load_setitem

    def _load_setitems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        for index in range(0, len(items), 2):
            _require_flat(items[index])
            target[items[index]] = items[index + 1]

    dispatch[pickle.SETITEMS[0]] = _load_setitems

    def _load_dict(self):
        items = self.pop_mark()
        for key in items[::2]:
            _require_flat(key)
        self.append({items[i]: items[i + 1] for i in range(0, len(items), 2)})

    dispatch[pickle.DICT[0]] = _load_dict

    def _load_additems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        if not isinstance(target, set):
            raise pickle.UnpicklingError("ADDITEMS on a value that is not a set")
        target.update(_flat_members(items))

    dispatch[pickle.ADDITEMS[0]] = _load_additems

    def _load_frozenset(self):
        self.append(frozenset(_flat_members(self.pop_mark())))

    dispatch[pickle.FROZENSET[0]] = _load_frozenset

    def _load_memoize(self):
        self._count()
        if isinstance(self.stack[-1], _ArrayRecord):
            self.stack[-1].memo_keys.append(len(self.memo))
        pickle._Unpickler.load_memoize(self)

    dispatch[pickle.MEMOIZE[0]] = _load_memoize

    def _load_binput(self):
        self._memo_put(self.read(1)[0])

    def _load_long_binput(self):
        self._memo_put(struct.unpack("<I", self.read(4))[0])

    def _load_put(self):
        key = int(self.readline()[:-1])
        if key < 0:
            raise ValueError("negative PUT argument")
        self._memo_put(key)

    dispatch[pickle.BINPUT[0]] = _load_binput
    dispatch[pickle.LONG_BINPUT[0]] = _load_long_binput
    dispatch[pickle.PUT[0]] = _load_put

    def _memo_put(self, key):
        self._count()
        if isinstance(self.stack[-1], _ArrayRecord):
            self.stack[-1].memo_keys.append(key)
        self.memo[key] = self.stack[-1]

    def _load_reduce(self):
        self._count()
        pickle._Unpickler.load_reduce(self)

    dispatch[pickle.REDUCE[0]] = _load_reduce

    def _load_newobj(self):
        self._count()
        args = self.stack.pop()
        cls = self.stack.pop()
        if not (isinstance(cls, type) and issubclass(cls, (Placeholder, ScriptObject))):
            raise pickle.UnpicklingError(f"cannot create an object of {type(cls).__name__}")
        self.append(cls.__new__(cls, *args))

    dispatch[pickle.NEWOBJ[0]] = _load_newobj

    def _load_newobj_ex(self):
        self._count()
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if not (isinstance(cls, type) and issubclass(cls, (Placeholder, ScriptObject))):
            raise pickle.UnpicklingError(f"cannot create an object of {type(cls).__name__}")
        self.append(cls.__new__(cls, *args, **kwargs))

    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex

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
        subclass = isinstance(new_type, type) and issubclass(new_type, Placeholder)
        if not (new_type is _TENSOR_TYPE or subclass) or not callable(function):
            raise pickle.UnpicklingError("a tensor of an unsupported type")
        return function(*args)

    def _tensor(self, storage, element, offset, size, stride) -> TensorRef:
        self._count()
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


_FLAT = (str, bytes, int, float, complex, bool, type(None))


def _require_flat(key) -> None:
    """Refuse a dict key or set member that is not a flat value (hashing a nested one could
    recurse without bound)."""
    if isinstance(key, _FLAT) or (
        isinstance(key, tuple) and len(key) <= 64 and all(isinstance(k, _FLAT) for k in key)
    ):
        return
    raise pickle.UnpicklingError(f"a dict key or set member of type {type(key).__name__}")


def _flat_members(items) -> list:
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise pickle.UnpicklingError("a set built from a value that is not a list")
    members = list(items)
    for member in members:
        _require_flat(member)
    return members


def _bytearray(source=b"", *args):
    """``bytearray`` of bytes or text only (``bytearray(10**10)`` would allocate)."""
    if isinstance(source, (bytes, bytearray)):
        return bytearray(source)
    if isinstance(source, str) and args in ((), ("latin1",), ("latin-1",)):
        return bytearray(source.encode("latin1"))
    raise pickle.UnpicklingError("bytearray of a size or an object")


def _runs_code(module: str) -> bool:
    """A module (or a submodule of one) whose names are refused."""
    parts = module.split(".")
    return any(".".join(parts[:n]) in CODE_MODULES for n in range(1, len(parts) + 1))


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _is_name(module: str, name: str) -> bool:
    return bool(_IDENTIFIER.fullmatch(module)) and bool(_IDENTIFIER.fullmatch(name))


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _refusal(label: str, key: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"{label}: refused: the pickle calls {shown(key, 80)}; nnequiv never runs code from a file"
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
