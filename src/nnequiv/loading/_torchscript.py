"""TorchScript archives read as data: parameters and buffers named as ``state_dict()`` would
name them, without running the archive's code.

The module tree comes from ``data.pkl`` (each module a :class:`ScriptObject` record); which of
a module's attributes are parameters and buffers comes from the ``__parameters__`` and
``__buffers__`` lines of its class in the archive's ``code/`` folder, which are read as text
(never executed). A module whose state is not a dict (a custom ``__getstate__``) gives the
tensors found in that state as ``<module>.__state__.<i>``, since only its ``__setstate__``
code would know their names.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass

from nnequiv.errors import FormatError
from nnequiv.loading._limits import reading, shown, walk_modules
from nnequiv.loading._restricted import ScriptObject, TensorRef

_CLASS_LINE = re.compile(r"class ([A-Za-z_][A-Za-z0-9_]*)(?:\(([^)]*)\))?:")
_MEMBER_LINE = re.compile(r"  (__parameters__|__buffers__) = (\[.*\])\s*")
_NAME_LIST = re.compile(r'\[\s*(?:"[A-Za-z0-9_]*"\s*,\s*)*(?:"[A-Za-z0-9_]*"\s*)?\]')
_NAME = re.compile(r'"([A-Za-z0-9_]*)"')


@dataclass(frozen=True)
class ScriptClass:
    """What a TorchScript class declares: whether it is a module, its parameter and buffer
    names in order."""

    is_module: bool
    parameters: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()


def parse_classes(text: str) -> dict[str, ScriptClass]:
    """The classes of one ``code/`` file, by name, from their declaration lines."""
    classes: dict[str, ScriptClass] = {}
    current = None
    members: dict[str, tuple[str, ...]] = {}
    for line in io.StringIO(text):  # one line at a time: a file of newlines costs its size
        header = _CLASS_LINE.fullmatch(line.rstrip())
        if header:
            current = header.group(1)
            bases = [b.strip() for b in (header.group(2) or "").split(",")]
            members = {"__parameters__": (), "__buffers__": ()}
            classes[current] = ScriptClass("Module" in bases)
            continue
        member = _MEMBER_LINE.fullmatch(line)
        if current is not None and member and _NAME_LIST.fullmatch(member.group(2)):
            members[member.group(1)] = tuple(_NAME.findall(member.group(2)))
            classes[current] = ScriptClass(
                classes[current].is_module, members["__parameters__"], members["__buffers__"]
            )
    return classes


def code_path(qualname: str) -> tuple[str, str]:
    """The ``code/`` file (relative to the archive's folder) defining ``qualname``, and the
    class name inside it: ``__torch__.a.b.C`` is class ``C`` of ``code/__torch__/a/b.py``."""
    module, _, name = qualname.rpartition(".")
    return f"code/{module.replace('.', '/')}.py", name


def script_state_dict(
    root, lookup: Callable[[str], ScriptClass | None], label: str
) -> dict[str, TensorRef]:
    """Parameters and buffers of the module tree under ``root``, in ``state_dict()`` order.

    ``lookup`` gives the declaration of a class name, or None when the archive has none.
    A module reached twice (shared, or a cycle in a hostile file) is visited once.
    """
    if not isinstance(root, ScriptObject) or lookup(root.qualname) is None:
        raise FormatError(f"{label}: TorchScript archive whose data is not a declared module")
    tensors: dict[str, TensorRef] = {}

    def visit(prefix: str, module: ScriptObject) -> list:
        state = module.state
        if not isinstance(state, dict):
            for index, tensor in enumerate(_tensors_in(state)):
                tensors[f"{prefix}__state__.{index}"] = tensor
            return []
        declared = lookup(module.qualname)
        for name in declared.parameters + declared.buffers:
            if isinstance(state.get(name), TensorRef):
                tensors[prefix + name] = state[name]
        return [
            (key, value)
            for key, value in state.items()
            if isinstance(key, str)
            and isinstance(value, ScriptObject)
            and _is_module(value, lookup)
        ]

    walk_modules(root, label, visit)
    return tensors


def _is_module(record: ScriptObject, lookup) -> bool:
    declared = lookup(record.qualname)
    return declared is not None and declared.is_module


def _tensors_in(state) -> list[TensorRef]:
    """Tensors inside nested tuples, lists and dicts, in order, each container once."""
    found = []
    stack = [state]
    seen: set[int] = set()
    while stack:
        value = stack.pop()
        if isinstance(value, TensorRef):
            found.append(value)
        elif isinstance(value, (tuple, list, dict)) and id(value) not in seen:
            seen.add(id(value))
            items = list(value.values()) if isinstance(value, dict) else list(value)
            stack.extend(reversed(items))
    return found


def class_lookup(read_text: Callable[[str], str | None], label: str):
    """A cached ``lookup`` for :func:`script_state_dict` over an archive's ``code/`` files;
    ``read_text`` gives a file's text, or None when the archive lacks it."""
    files: dict[str, dict[str, ScriptClass]] = {}

    def lookup(qualname: str) -> ScriptClass | None:
        path, name = code_path(qualname)
        if path not in files:
            text = read_text(path)
            with reading(label, f"TorchScript code '{shown(path)}' is unreadable"):
                files[path] = parse_classes(text) if text is not None else {}
        return files[path].get(name)

    return lookup
