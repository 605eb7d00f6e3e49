"""The code version of an agent: a fingerprint of the code that decides its journal.

A job's journal is only as good as the code that replays it. Each agent has a version: the
one its author gives (``@app.agent(version="2024-06-refunds")``), else :func:`fingerprint`,
a sha256 over what Python compiled of it. Every entry a run writes records that version, and
a worker can tell a job last run by other code before it touches it (:mod:`aetheris.versions`).

What the fingerprint covers, starting from the agent function and following names it uses:

* the bytecode of the function and of every function, lambda and comprehension nested in it
  (instructions, constants, names, argument and local names), without line numbers or the
  file's path: editing a comment or moving the file changes nothing;
* functions it reaches by name, in its module's globals or in its closure, defined in the same
  module (helpers, transitively), and every tool it names (a ``@app.tool``: its name, its effect
  class and its function's bytecode, wherever it is defined);
* plain constants it reaches the same way (``FEE = 0.05`` in its module).

What it cannot see: code in other modules (a helper imported from elsewhere, a library, a
framework the agent drives), methods called on objects (``client.fetch()``), data read at run
time (prompt files, settings, the environment), and classes. For agents whose behaviour lives
there, give ``version=`` and change it when the behaviour changes. Bytecode differs between
Python minor versions (3.11 and 3.12), so an interpreter upgrade is a new version; a patch
release is not.

Designs considered and rejected: hashing ``inspect.getsource`` (changes with comments and
formatting, fails for code without a source file, as in a zipapp), and hashing the module
file (every unrelated edit, and imports order, would count).
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Callable, Iterator
from typing import Any

_PRIMITIVES = (str, int, float, bool, bytes, type(None))
VERSION_CHARS = 12  # a fingerprint's length, in hex characters


def fingerprint(fn: Callable[..., Any]) -> str:
    """The version of the code ``fn`` runs, as 12 hex characters (see the module's docs).

    Stable across processes and interpreter restarts (no ids, addresses or hash seeds enter
    it); different when the body of ``fn``, of a helper it calls in its module or of a tool it
    names changes.
    """
    digest = hashlib.sha256()
    for part in _parts(fn):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:VERSION_CHARS]


def _parts(root: Callable[..., Any]) -> Iterator[str]:
    """What is hashed, in a stable order: the root first, then what it reaches, by name."""
    home = getattr(root, "__module__", None)
    seen: set[int] = set()
    queue: list[tuple[str, Any]] = [("agent", root)]
    while queue:
        label, value = queue.pop(0)
        if id(value) in seen:
            continue
        seen.add(id(value))
        if _is_tool(value):
            definition = value.definition
            yield f"tool {label} {definition.name} {definition.effect}"
            value = definition.fn
        function = _function(value)
        if function is None:
            continue
        yield f"function {label} {_code(function.__code__)}"
        yield from (f"const {name} {text}" for name, text in _constants(function))
        queue.extend(sorted(_reached(function, home), key=lambda item: item[0]))


def _is_tool(value: Any) -> bool:
    definition = getattr(value, "definition", None)
    return callable(value) and hasattr(definition, "effect") and hasattr(definition, "fn")


def _function(value: Any) -> types.FunctionType | None:
    """The plain function behind ``value`` (unwrapping decorators), if it is one."""
    for _ in range(10):
        if isinstance(value, types.FunctionType):
            return value
        if isinstance(value, types.MethodType):
            value = value.__func__
            continue
        wrapped = getattr(value, "__wrapped__", None)
        if wrapped is None:
            return None
        value = wrapped
    return None


def _names(function: types.FunctionType) -> Iterator[tuple[str, Any]]:
    """The values ``function`` names: its globals used by name, and its closure's cells."""
    code = function.__code__
    for name in sorted(set(_global_names(code))):
        if name in function.__globals__:
            yield name, function.__globals__[name]
    for name, cell in zip(code.co_freevars, function.__closure__ or (), strict=True):
        try:
            yield name, cell.cell_contents
        except ValueError:  # a cell not filled yet
            continue


def _global_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _reached(function: types.FunctionType, home: str | None) -> Iterator[tuple[str, Any]]:
    """Helpers of the agent's module and tools anywhere, that ``function`` names."""
    for name, value in _names(function):
        if _is_tool(value):
            yield name, value
            continue
        inner = _function(value)
        if inner is not None and inner.__module__ == home:
            yield name, value


def _constants(function: types.FunctionType) -> Iterator[tuple[str, str]]:
    """Plain values ``function`` names (module constants, closure values), as stable text."""
    for name, value in _names(function):
        text = _stable(value)
        if text is not None:
            yield name, text


def _stable(value: Any) -> str | None:
    """A text for a plain value that is the same in every process (``None``: not plain)."""
    if isinstance(value, _PRIMITIVES):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, tuple | frozenset):
        items = [_stable(item) for item in value]
        if any(item is None for item in items):
            return None
        texts = [item for item in items if item is not None]
        if isinstance(value, frozenset):
            texts.sort()  # a set's order depends on the process's hash seed
        return f"{type(value).__name__}({','.join(texts)})"
    return None


def _code(code: types.CodeType) -> str:
    """A code object as stable text: what it does, never where it is (no lines, no file)."""
    consts = []
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            consts.append(f"code({_code(const)})")
        else:
            consts.append(_stable(const) or f"{type(const).__name__}:?")
    fields = (
        code.co_name,
        code.co_code.hex(),
        ",".join(consts),
        ",".join(code.co_names),
        ",".join(code.co_varnames),
        ",".join(code.co_freevars),
        ",".join(code.co_cellvars),
        str(code.co_argcount),
        str(code.co_kwonlyargcount),
        str(code.co_flags),
    )
    return "|".join(fields)
