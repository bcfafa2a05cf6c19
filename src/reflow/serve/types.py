"""Column types: what a table's column holds, read from Python annotations and checked on every value.

A flow is typed where it is built, so a wrong column name or type fails before anything is served. The types
are few: the scalars ``int``, ``float``, ``str``, ``bool`` and ``bytes``; numpy arrays with a dtype and a
shape (``Array("float32", (3, 32, 32))``; a ``None`` dimension matches any size); torch tensors likewise
(``Tensor``); and ``ANY_TYPE`` where a function is not annotated. A column is *nullable* when it may hold
``None``: the columns a left or outer join could not fill, or an annotation ``float | None``.

A parameter of type P accepts a column of type C when the kinds agree, P's dtype (if given) is C's, their
shapes agree dimension by dimension, and P is nullable if C is. Nothing is widened silently: an ``int``
column does not feed a ``float`` parameter.
"""

from __future__ import annotations

import base64
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from reflow.errors import TableError

SCALARS: dict[type, str] = {int: "int", float: "float", str: "str", bool: "bool", bytes: "bytes"}
PY_TYPE: dict[str, type] = {v: k for k, v in SCALARS.items()}
Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class ColumnType:
    """``kind``: int, float, str, bool, bytes, array, tensor or any; ``dtype``/``shape`` for arrays and
    tensors (``None``: any)."""

    kind: str
    dtype: str | None = None
    shape: Shape | None = None
    nullable: bool = False

    def __str__(self) -> str:
        s = self.kind
        if self.kind in ("array", "tensor"):
            dims = "" if self.shape is None else "[" + ",".join("*" if d is None else str(d)
                                                                 for d in self.shape) + "]"
            s = f"{self.kind}<{self.dtype or '*'}>{dims}"
        return f"{s} | None" if self.nullable else s

    def optional(self) -> ColumnType:
        """The same type, nullable."""
        return replace(self, nullable=True)

    @property
    def is_tensor_like(self) -> bool:
        return self.kind in ("array", "tensor")

    def nbytes(self) -> float:
        """A guess at one value's size in bytes (for the cost model): exact for fixed-shape arrays."""
        if self.is_tensor_like and self.shape is not None and None not in self.shape:
            itemsize = np.dtype(self.dtype).itemsize if self.dtype else 4
            return float(itemsize * int(np.prod([d for d in self.shape if d is not None])))
        return 64.0 if self.kind in ("str", "bytes", "array", "tensor") else 8.0


ANY_TYPE = ColumnType("any")


def Array(dtype: Any = None, shape: Sequence[int | None] | None = None) -> ColumnType:
    """A numpy array column: ``Array("float32", (3, 32, 32))``."""
    return ColumnType("array", None if dtype is None else np.dtype(dtype).name,
                      None if shape is None else tuple(shape))


def Tensor(dtype: Any = None, shape: Sequence[int | None] | None = None) -> ColumnType:
    """A torch tensor column: ``Tensor("float32", (10,))`` or ``Tensor(torch.float32, (10,))``."""
    if dtype is not None and type(dtype).__module__ == "torch":
        dtype = str(dtype).removeprefix("torch.")
    return replace(Array(dtype, shape), kind="tensor")


def from_annotation(annotation: Any, where: str) -> ColumnType:
    """The column type an annotation stands for (``where`` names the place, for the error message)."""
    from reflow.errors import FlowSchemaError

    if annotation is None or annotation is typing.Any:
        return ANY_TYPE
    if isinstance(annotation, ColumnType):
        return annotation
    if annotation in SCALARS:
        return ColumnType(SCALARS[annotation])
    if annotation is np.ndarray:
        return ColumnType("array")
    if getattr(annotation, "__module__", "") == "torch" and getattr(annotation, "__name__", "") == "Tensor":
        return ColumnType("tensor")
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return from_annotation(args[0], where).optional()
    if origin is np.ndarray:
        return ColumnType("array")
    raise FlowSchemaError(f"{where}: annotation {annotation!r} is not a column type; use int, float, str, "
                          "bool, bytes, np.ndarray, torch.Tensor, reflow.serve.Array(dtype, shape), "
                          "reflow.serve.Tensor(dtype, shape), or X | None")


def accepts(param: ColumnType, column: ColumnType) -> str | None:
    """``None`` if a parameter of type ``param`` takes values of column type ``column``, else why not."""
    if param.kind == "any" or column.kind == "any":
        return None if param.nullable or not column.nullable or param.kind == "any" else \
            f"it may be None (the column is {column}); annotate the parameter as Optional"
    if param.kind != column.kind:
        return f"it holds {column}, not {param}"
    if param.dtype is not None and column.dtype != param.dtype:
        return f"it holds {column}, not {param}"
    if param.shape is not None and (column.shape is None or len(column.shape) != len(param.shape) or any(
            p is not None and c != p for p, c in zip(param.shape, column.shape, strict=True))):
        return f"it holds {column}, not {param}"
    if column.nullable and not param.nullable:
        return f"it may be None (the column is {column}); annotate the parameter as {param} | None"
    return None


def _torch() -> Any:
    import torch

    return torch


def check(t: ColumnType, value: Any, where: str) -> Any:
    """``value`` as a value of ``t`` (numpy scalars become Python ones), or TableError naming ``where``."""
    if value is None:
        if t.nullable or t.kind == "any":
            return None
        raise TableError(f"{where}: None in a column of type {t} (not nullable)")
    k = t.kind
    if k == "any":
        return value
    if k in PY_TYPE:
        if k == "bool":
            if isinstance(value, bool | np.bool_):
                return bool(value)
        elif k == "int":
            if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
                return int(value)
        elif k == "float":
            if isinstance(value, float | np.floating):
                return float(value)
        elif isinstance(value, PY_TYPE[k]):
            return value
        raise TableError(f"{where}: expected {t}, got {type(value).__name__} {_short(value)}")
    if k == "array":
        if not isinstance(value, np.ndarray):
            raise TableError(f"{where}: expected {t}, got {type(value).__name__}")
        _check_array(t, value.dtype.name, value.shape, where)
        return value
    torch = _torch()
    if not isinstance(value, torch.Tensor):
        raise TableError(f"{where}: expected {t}, got {type(value).__name__}")
    _check_array(t, str(value.dtype).removeprefix("torch."), tuple(value.shape), where)
    return value


def _check_array(t: ColumnType, dtype: str, shape: tuple[int, ...], where: str) -> None:
    if t.dtype is not None and dtype != t.dtype:
        raise TableError(f"{where}: expected {t}, got dtype {dtype}")
    if t.shape is not None and (len(shape) != len(t.shape) or any(
            d is not None and s != d for s, d in zip(shape, t.shape, strict=True))):
        raise TableError(f"{where}: expected {t}, got shape {tuple(shape)}")


def _short(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def from_json(t: ColumnType, value: Any, where: str) -> Any:
    """A JSON value (lists for arrays, base64 text for bytes) as a value of ``t``."""
    if value is None:
        return check(t, None, where)
    if t.kind == "bytes" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise TableError(f"{where}: bytes are sent in JSON as base64 text; {_short(value)} is not") \
                from None
    if t.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if t.is_tensor_like:
        if not isinstance(value, list | int | float):
            raise TableError(f"{where}: expected {t} as a (nested) JSON list, got {type(value).__name__}")
        try:
            arr = np.asarray(value, dtype=t.dtype or None)
        except (ValueError, TypeError) as e:
            raise TableError(f"{where}: cannot read {t} from JSON: {e}") from None
        if arr.dtype == object:
            raise TableError(f"{where}: ragged nested lists cannot be {t}")
        value = arr if t.kind == "array" else _torch().from_numpy(arr)
    return check(t, value, where)


def to_json(value: Any) -> Any:
    """A column value as JSON: arrays and tensors as nested lists, bytes as base64 text."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "tolist") and type(value).__module__ == "torch":
        return value.tolist()
    return value
