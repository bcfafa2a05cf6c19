"""User functions in a flow: how their parameters bind to columns and their return annotation names columns.

A function's signature is its contract with the table. Each parameter takes the column of the same name
(``def classify(img: Array("float32", (3, 32, 32)))`` reads column ``img``), unless it is annotated ``Row``:
then it gets the whole row. The return annotation names and types the columns a ``map`` adds: a ``NamedTuple``
class gives several (its fields), a single type gives one column named after the function (or ``names=``),
``tuple[int, float]`` with ``names=("a", "b")`` gives several; ``output={"y": float}`` types a lambda.

A class instead of a function is instantiated once in each process that runs it, on first use (load a model
in ``__init__``), and its instances are called; its ``__call__`` is the signature. The instance is never
pickled: a worker builds its own, which is what makes a model built in code with a fixed seed the same
everywhere.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reflow.errors import FlowSchemaError
from reflow.serve.table import Row, Schema
from reflow.serve.types import ANY_TYPE, ColumnType, accepts, from_annotation

ROW = "<row>"  # a parameter bound to the whole row


def label(fn: Any) -> str:
    """A readable name for a function or class (lambdas: "lambda")."""
    name = getattr(fn, "__name__", type(fn).__name__)
    return "lambda" if name == "<lambda>" else str(name)


class Instance:
    """A function, or a class instantiated lazily once per process; pickles as the function or class only."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self._made: Callable[..., Any] | None = None

    def build(self) -> Callable[..., Any]:
        """The callable: the function, or this process's one instance of the class (made now if need be)."""
        if self._made is None:
            made: Any = self.fn() if inspect.isclass(self.fn) else self.fn
            self._made = made
        return self._made

    def __call__(self, *args: Any) -> Any:
        return self.build()(*args)

    def __getstate__(self) -> dict[str, Any]:
        return {"fn": self.fn}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.fn, self._made = state["fn"], None


def _resolve(annotation: Any, module: str, where: str) -> Any:
    """A NamedTuple field's annotation, evaluated if it is still text (``from __future__ import
    annotations``)."""
    text = annotation.__forward_arg__ if isinstance(annotation, typing.ForwardRef) else annotation
    if not isinstance(text, str):
        return annotation
    try:
        return eval(text, vars(sys.modules[module]) if module in sys.modules else {})
    except Exception as e:
        raise FlowSchemaError(f"{where}: cannot evaluate the annotation {text!r}: {e}") from None


def _target(fn: Any) -> Callable[..., Any]:
    return fn.__call__ if inspect.isclass(fn) else fn


def _hints(fn: Any, where: str) -> dict[str, Any]:
    """The annotations, evaluated where they are text: in the function's module and, for a function defined
    inside another, with the enclosing names it uses (a local NamedTuple it returns, say)."""
    target = _target(fn)
    try:
        nonlocals = dict(inspect.getclosurevars(target).nonlocals) if inspect.isfunction(target) else {}
        return dict(inspect.get_annotations(target, locals=nonlocals, eval_str=True))
    except Exception as e:
        raise FlowSchemaError(f"{where}: cannot read the annotations of {label(fn)}: {e} (a type defined "
                              "inside a function is found only if the function body uses it; define it at "
                              "module level)") from None


@dataclass(frozen=True)
class Binding:
    """How to call ``fn`` on a row: ``params`` are the column names (or ``ROW``) its parameters take."""

    fn: Instance
    params: tuple[str, ...]
    types: tuple[ColumnType, ...] = field(default=())


def bind(fn: Any, schema: Schema, where: str) -> Binding:
    """Bind ``fn``'s parameters to the columns of ``schema``; FlowSchemaError names a missing or mistyped
    column."""
    if not callable(fn):
        raise FlowSchemaError(f"{where}: expected a function or class, got {type(fn).__name__}")
    target = _target(fn)
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError) as e:
        raise FlowSchemaError(f"{where}: cannot read the signature of {label(fn)}: {e}") from None
    hints = _hints(fn, where)
    params: list[str] = []
    types: list[ColumnType] = []
    plist = list(sig.parameters.values())
    if inspect.isclass(fn):
        plist = plist[1:]  # self
    for p in plist:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise FlowSchemaError(f"{where}: {label(fn)} takes *{p.name}; name each column it reads as a "
                                  "parameter, or take the whole row as a parameter annotated Row")
        hint = hints.get(p.name)
        if hint is Row:
            params.append(ROW)
            types.append(ANY_TYPE)
            continue
        if p.name not in schema:
            if p.default is not p.empty:
                continue  # an optional parameter that no column feeds keeps its default
            raise FlowSchemaError(f"{where}: {label(fn)}'s parameter {p.name!r} names no column; the input "
                                  f"columns are {list(schema.names)} (annotate a parameter Row to get the "
                                  "whole row)")
        want = from_annotation(hint, f"{where}: parameter {p.name!r}")
        why = accepts(want, schema[p.name])
        if why is not None:
            raise FlowSchemaError(f"{where}: column {p.name!r} cannot be passed to {label(fn)}'s parameter "
                                  f"{p.name!r}: {why}")
        params.append(p.name)
        types.append(schema[p.name])
    return Binding(Instance(fn), tuple(params), tuple(types))


def outputs(fn: Any, names: Sequence[str] | None, output: Mapping[str, Any] | None, where: str,
            single: str | None = None) -> tuple[Schema, bool]:
    """The columns ``fn`` returns (from ``output=``, else from its return annotation and ``names=``; one
    value is named ``single``, by default after ``fn``), and whether it returns them as a tuple (several
    values, or a NamedTuple) rather than one bare value."""
    if output is not None:
        if names is not None:
            raise FlowSchemaError(f"{where}: give output={{name: type}} or names=, not both")
        out = Schema(output)
        return out, len(out) != 1
    ret = _hints(fn, where).get("return", inspect.Signature.empty)
    if ret is inspect.Signature.empty:
        if names is None:
            raise FlowSchemaError(f"{where}: {label(fn)} has no return annotation; annotate it (a type, a "
                                  "NamedTuple, tuple[...]) or pass output={'column': type}")
        return Schema({n: ANY_TYPE for n in names}), len(names) != 1
    is_named = isinstance(ret, type) and issubclass(ret, tuple)
    fields = getattr(ret, "__annotations__", None) if is_named else None
    if fields:
        cols = [(n, _resolve(t, ret.__module__, where)) for n, t in fields.items()]
    elif typing.get_origin(ret) is tuple:
        args = [a for a in typing.get_args(ret) if a is not Ellipsis]
        if names is None:
            raise FlowSchemaError(f"{where}: {label(fn)} returns {len(args)} values ({ret}); name them with "
                                  f"names=(...) or return a NamedTuple")
        cols = list(zip(names, args, strict=False))
    else:
        cols = [(single or label(fn), ret)]
    if names is not None:
        if len(names) != len(cols):
            raise FlowSchemaError(f"{where}: names={list(names)} gives {len(names)} names for the "
                                  f"{len(cols)} values {label(fn)} returns")
        cols = [(n, t) for n, (_, t) in zip(names, cols, strict=True)]
    multi = bool(fields) or typing.get_origin(ret) is tuple
    return Schema({n: from_annotation(t, f"{where}: return value {n!r}") for n, t in cols}), multi


def call_args(b: Binding, schema: Schema, values: tuple[Any, ...], key: int) -> list[Any]:
    """The arguments for one row."""
    return [Row(schema, values, key) if p == ROW else values[schema.index(p)] for p in b.params]
