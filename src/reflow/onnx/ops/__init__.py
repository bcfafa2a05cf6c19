"""The operator table: one entry per ONNX op, holding everything reflow knows about it.

Policy. An ONNX operator is described once, by an :class:`OpRule`, in the module of its family
(``elementwise``, ``nn``, ``shape``, ``reduce``). The rule's ``lower`` turns a call (argument expressions and
ONNX attributes) into a Python expression over torch; that one expression is both

* the **code generator's** lowering: it is pasted verbatim into the generated module, and
* the **eager implementation**: :func:`compile_rule` compiles the same expression into a function, which the
  constant folder, the profiler and the conformance backend run.

So the generated code and the eager interpreter cannot drift apart. Expressions may call small helpers from
:mod:`reflow.onnx.kernels` (functions named ``onnx_*``, pure torch); the generator copies the source of the
helpers a model uses into the generated file, which therefore needs nothing but torch. The rule's ``flops``
is the analytic cost model used when profiling is off or fails; its optional ``prepack`` turns the op's weight
(input 1, a constant) into the layout its kernel wants, once, when the weights are loaded. Adding an op means
adding one ``register`` call next to its family.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reflow.errors import UnsupportedOpError

Shape = tuple[int, ...]
# the ``kernel`` attribute of a node lowered for a graph compiler: plain out-of-place torch ops, which a
# tracer sees through (reflow.onnx.graph_compiler)
GRAPH = "graph"


@dataclass(frozen=True)
class Call:
    """One application of an op, as the lowering sees it.

    ``args`` are Python expressions (variable names) for the inputs, ``"None"`` for an omitted optional input;
    ``attrs`` the ONNX attributes as Python values; ``n_out`` how many outputs the node has; ``opset`` the
    model's default-domain opset (some ops changed meaning across opsets).
    """

    args: tuple[str, ...]
    attrs: Mapping[str, Any]
    n_out: int = 1
    opset: int = 21

    def arg(self, i: int) -> str:
        """Input ``i``'s expression, or ``"None"`` when it is absent."""
        return self.args[i] if i < len(self.args) else "None"

    def has(self, i: int) -> bool:
        return i < len(self.args) and self.args[i] != "None"


@dataclass(frozen=True)
class FlopCall:
    """Shapes for the analytic cost model (``None`` for an absent or unknown input)."""

    ins: tuple[Shape | None, ...]
    outs: tuple[Shape | None, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)


def numel(shape: Shape | None) -> int:
    return 0 if shape is None else math.prod(shape)


def per_output_element(k: float = 1.0) -> Callable[[FlopCall], float]:
    """FLOP model of an elementwise op: ``k`` operations per output element."""

    def flops(c: FlopCall) -> float:
        return k * sum(numel(s) for s in c.outs)

    return flops


def no_flops(c: FlopCall) -> float:
    """Ops that only move or reinterpret data: their cost is the copy, counted per element."""
    return 0.25 * sum(numel(s) for s in c.outs)


@dataclass(frozen=True)
class OpRule:
    """Everything about one ONNX op. ``lower(call) -> str`` is a Python expression (a tuple when
    ``call.n_out > 1``); ``flops(FlopCall) -> float``; ``foldable`` says constant folding may run it;
    ``prepack(call, input_shape) -> str | None``, if given, is an expression over ``call.arg(1)`` (the weight)
    the generated code evaluates once at load time (``input_shape``: an expression, input 0's shape), or None
    when this call's weight stays as it is."""

    op: str
    lower: Callable[[Call], str]
    flops: Callable[[FlopCall], float] = field(default_factory=lambda: per_output_element())
    foldable: bool = True
    prepack: Callable[[Call, str], str | None] | None = None


REGISTRY: dict[str, OpRule] = {}


def register(
    op: str,
    lower: Callable[[Call], str],
    flops: Callable[[FlopCall], float] | None = None,
    *,
    foldable: bool = True,
    prepack: Callable[[Call, str], str | None] | None = None,
) -> None:
    """Add ``op`` to the table (once)."""
    if op in REGISTRY:
        raise ValueError(f"ONNX op {op!r} registered twice")
    REGISTRY[op] = OpRule(op, lower, flops or per_output_element(), foldable, prepack)


def rule(op: str, node: str = "?") -> OpRule:
    """The rule for ``op``; an UnsupportedOpError naming the op and node if there is none."""
    _load()
    try:
        return REGISTRY[op]
    except KeyError:
        raise UnsupportedOpError(
            f"ONNX op {op!r} (node {node!r}) is not supported by reflow; supported ops: "
            f"{', '.join(sorted(REGISTRY))}. Add it with reflow.onnx.ops.register(...) in its family module."
        ) from None


def supported_ops() -> list[str]:
    _load()
    return sorted(REGISTRY)


def lit(v: Any) -> str:
    """A Python literal for an attribute value (lists become tuples)."""
    if isinstance(v, list | tuple):
        return (
            "(" + "".join(f"{lit(x)}, " for x in v) + ")"
            if len(v) == 1
            else "(" + ", ".join(lit(x) for x in v) + ")"
        )
    if isinstance(v, float):
        if math.isinf(v):
            return "math.inf" if v > 0 else "-math.inf"
        if math.isnan(v):
            return "math.nan"
    return repr(v)


def fmt_args(args: Sequence[str]) -> str:
    return ", ".join(args)


def _load() -> None:
    """Import the family modules, which fill REGISTRY (lazily, so the table has no import cycle)."""
    if REGISTRY:
        return
    from reflow.onnx.ops import elementwise, nn, reduce, shape  # noqa: F401
