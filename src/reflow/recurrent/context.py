"""The context of a recurrent program: its dimensions, its bounds and the dependence graph being built.

``Context("b i t")`` makes three symbolic dimensions (env ``b``, iteration ``i``, timestep ``t``) whose
upper bounds ``B``, ``I``, ``T`` get values only at ``compile(B=8, I=100, T=500)``. Every recurrent tensor
made in the context is a node of its dependence graph (a ``reflow.graph.Graph``): the node computes an op at
every point of its domain; its attrs hold the domain, the shape and dtype of each output, and the op's own
attributes (index expressions, branch conditions).

Node attrs used everywhere:

    domain   tuple of dimension names, in the context's order
    outs     tuple of ``Out(port, shape, dtype)``, one per output port
    label    the name a user gave the tensor (error messages use it)
    index    (``rt.index``) one entry per dimension of the input's domain: an expression or a ``Slice``
    branches (``rt.merge``) one ``Branch(cond, index)`` per input: the first whose condition holds defines
             the value, read from that input at that index
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from reflow.errors import RecurrentError
from reflow.graph.graph import Graph, Node, Port
from reflow.recurrent.conditions import Cond
from reflow.recurrent.ops import OPS, Shape
from reflow.recurrent.symbolic import Entry, Expr, Lin, Slice, var

# Ops computed element by element, so ``x[w] op y[w] == (x op y)[w]`` for any index w.
ELEMENTWISE = frozenset({"neg", "exp", "log", "tanh", "relu", "sigmoid", "abs", "sqrt", "sign", "not", "cast",
                         "clamp", "add", "sub", "mul", "div", "pow", "maximum", "minimum", "where"})

if TYPE_CHECKING:
    from reflow.recurrent.program import Program
    from reflow.recurrent.tensor import RecurrentTensor


@dataclass(frozen=True)
class Out:
    """One output of a node: its port, spatial shape and dtype."""

    port: str
    shape: Shape
    dtype: torch.dtype


@dataclass(frozen=True, eq=False)
class Branch:
    """One case of a conditional definition: where ``cond`` holds, read the input at ``index``."""

    cond: Cond
    index: tuple[Entry, ...]

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.cond.key, tuple(e.key for e in self.index))


def stable_hash(*parts: object) -> int:
    """A hash that is the same in every process and run (Python's ``hash`` of a str is salted)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class Context:
    """Symbolic dimensions, their bounds, and the dependence graph of one recurrent program."""

    def __init__(self, dims: str | Sequence[str] = "b i t", bounds: str | Sequence[str] | None = None,
                 dtype: torch.dtype = torch.float32, name: str = "program") -> None:
        names = tuple(dims.split() if isinstance(dims, str) else dims)
        bound_names = tuple(bounds.split() if isinstance(bounds, str) else bounds) if bounds is not None \
            else tuple(d.upper() for d in names)
        if len(set(names)) != len(names) or len(bound_names) != len(names) or set(names) & set(bound_names):
            raise RecurrentError(f"dimensions {names} and bounds {bound_names} must be distinct names, one "
                                 "bound "
                                 "per dimension")
        for n in names + bound_names:
            if not n.isidentifier():
                raise RecurrentError(f"{n!r} is not a valid dimension or bound name")
        self.dim_names = names
        self.bound_of = dict(zip(names, bound_names, strict=True))
        self.dims: tuple[Lin, ...] = tuple(var(n) for n in names)
        self.bounds: tuple[Lin, ...] = tuple(var(n) for n in bound_names)
        self.dtype = dtype
        self.graph = Graph(name)
        self.params: list[str] = []  # parameter nodes, in creation order
        self.grads: dict[str, RecurrentTensor] = {}  # parameter node -> gradient of the last backward()
        self.resources: dict[str, Any] = {}  # name -> object with open() / close() (env banks)
        self._count: dict[str, int] = {}

    # -- names and domains -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Context(dims={' '.join(self.dim_names)}, {len(self.graph)} nodes)"

    def fresh(self, stem: str) -> str:
        """A node name not used yet: the stem, then stem_1, stem_2, ... (deterministic)."""
        n = self._count.get(stem, 0)
        while True:
            name = stem if n == 0 else f"{stem}_{n}"
            n += 1
            if name not in self.graph:
                self._count[stem] = n
                return name

    def order(self, dims: Iterable[str]) -> tuple[str, ...]:
        """``dims`` without repeats, in the context's order."""
        want = set(dims)
        return tuple(d for d in self.dim_names if d in want)

    def dims_of(self, e: Expr | Entry | Cond) -> frozenset[str]:
        return frozenset(v for v in e.vars() if v in self.bound_of)

    def bound(self, dim: str) -> Lin:
        return var(self.bound_of[dim])

    def domain_of(self, names: Sequence[str] | Sequence[Expr] | None) -> tuple[str, ...]:
        if names is None:
            return ()
        out = []
        for d in names:
            name = str(d)
            if name not in self.bound_of:
                raise RecurrentError(f"{name!r} is not a dimension of this context (its dimensions are "
                                     f"{', '.join(self.dim_names)})")
            out.append(name)
        return self.order(out)

    # -- building nodes ----------------------------------------------------------------------------------
    def add(self, kind: str, inputs: Sequence[RecurrentTensor], domain: Sequence[str], outs: Sequence[Out],
            label: str | None = None, **attrs: Any) -> str:
        """Add a node computing ``kind`` over ``domain``; returns its name."""
        name = self.fresh(label or kind)
        attrs = {"domain": self.order(domain), "outs": tuple(outs), "label": label or name, **attrs}
        self.graph.add_node(Node(name, "rt." + kind, tuple(Port(f"x{k}") for k in range(len(inputs))),
                                 tuple(Port(o.port) for o in outs), 1.0, attrs))
        for k, x in enumerate(inputs):
            self.graph.connect(x.node, x.port, name, f"x{k}")
        return name

    def tensor(self, node: str, port: str = "out") -> RecurrentTensor:
        from reflow.recurrent.tensor import RecurrentTensor

        n = self.graph.node(node)
        out = next(o for o in n.attrs["outs"] if o.port == port)
        return RecurrentTensor(self, node, port, n.attrs["domain"], out.shape, out.dtype)

    def find(self, label: str) -> RecurrentTensor:
        """The tensor named ``label`` (by ``named()``, or as a placeholder's name)."""
        hits = [n.name for n in self.graph if n.attrs.get("label") == label]
        if len(hits) != 1:
            raise RecurrentError(f"{len(hits)} tensors are named {label!r}; name tensors with .named(...)")
        return self.tensor(hits[0])

    def apply(self, kind: str, inputs: Sequence[RecurrentTensor], label: str | None = None,
              domain: Sequence[str] = (), **attrs: Any) -> RecurrentTensor:
        """The op ``kind`` (see ``ops.OPS``) of ``inputs``; its domain is the union of theirs."""
        op = OPS[kind]
        for x in inputs:
            if x.ctx is not self:
                raise RecurrentError(f"tensor {x.label} belongs to another context")
        if kind in ELEMENTWISE and not domain:
            hoisted = self._hoist_window(kind, inputs, label, attrs)
            if hoisted is not None:
                return hoisted
        dom = self.order([d for x in inputs for d in x.domain] + list(domain))
        from reflow.errors import ShapeMismatch

        try:
            shape = op.shape(attrs, [x.shape for x in inputs])
        except ShapeMismatch as e:
            names = ", ".join(f"{x.label} {x.shape_str}" for x in inputs)
            raise ShapeMismatch(f"{kind}({names}): {e}") from None
        dtype = op.dtype(attrs, [x.dtype for x in inputs])
        return self.tensor(self.add(kind, inputs, dom, [Out("out", shape, dtype)], label, **attrs))

    def _hoist_window(self, kind: str, inputs: Sequence[RecurrentTensor], label: str | None,
                      attrs: dict[str, Any]) -> RecurrentTensor | None:
        """``x[w] op y[w]`` as ``(x op y)[w]``, for an elementwise op and a window ``w`` that moves with a
        dimension (``t:T``, ``max(0, t-4):t+1``): the same values, but the window is read once, by what
        reduces it, which is where gradients and incrementalization handle windows. Other operands must be
        the same everywhere (no domain) and broadcast over the window's elements, not its axis."""
        entries: tuple[Entry, ...] | None = None
        src_dom: tuple[str, ...] | None = None
        inner: list[RecurrentTensor] = []
        for x in inputs:
            n = self.graph.node(x.node)
            index = n.attrs.get("index") if n.op == "rt.index" else None
            if index is None:
                if x.domain:
                    return None
                inner.append(x)
                continue
            if not any(isinstance(e, Slice) and (e.lo.vars() | e.hi.vars()) & set(self.bound_of)
                       for e in index):
                return None
            (edge,) = self.graph.in_edges(x.node)
            src = self.tensor(edge.src, edge.src_port)
            if entries is None:
                entries, src_dom = index, src.domain
            elif [e.key for e in index] != [e.key for e in entries] or src.domain != src_dom:
                return None
            inner.append(src)
        if entries is None or src_dom is None:
            return None
        rank = max(len(x.shape) for x in inner if x.domain)
        if any(not x.domain and len(x.shape) > rank for x in inner):
            return None
        return self.apply(kind, inner, label, **attrs)[entries]

    def const(self, value: Any, dtype: torch.dtype | None = None,
              label: str | None = None) -> RecurrentTensor:
        """A constant (a number, array or torch tensor); its domain is empty, so it is the same everywhere."""
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value.copy())
        if isinstance(value, float):
            t = torch.tensor(value, dtype=dtype or self.dtype)
        else:
            t = torch.as_tensor(value)
        if dtype is not None:
            t = t.to(dtype)
        elif t.dtype.is_floating_point and t.dtype != self.dtype:
            t = t.to(self.dtype)
        return self.apply("const", [], label=label, value=t)

    def lift(self, x: Any, like: RecurrentTensor | None = None) -> RecurrentTensor:
        from reflow.recurrent.tensor import RecurrentTensor

        if isinstance(x, RecurrentTensor):
            return x
        if isinstance(x, Expr):
            return self.symval(x)
        dtype = None
        if like is not None and isinstance(x, (int, float)) and not isinstance(x, bool):
            dtype = like.dtype if like.dtype.is_floating_point or isinstance(x, int) else self.dtype
        return self.const(x, dtype)

    def placeholder(self, shape: Sequence[int] | int = (), dtype: torch.dtype | None = None,
                    domain: Sequence[Any] = (), name: str | None = None) -> RecurrentTensor:
        """A tensor defined later, case by case: ``x[b, i, 0] = ...; x[b, i, t + 1] = ...``."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        dom = self.domain_of(domain)
        node = self.add("merge", [], dom, [Out("out", shape, dtype or self.dtype)], name, branches=())
        return self.tensor(node)

    def param(self, value: Any, domain: Sequence[Any], name: str | None = None) -> RecurrentTensor:
        """A parameter: ``value`` at the first point of ``domain`` (``i = 0``); an optimizer defines the
        rest."""
        init = self.const(value, label=f"{name}_init" if name else None)
        p = self.placeholder(init.shape, init.dtype, domain, name or "param")
        first = self.dims_cond_first(p.domain)
        p.define(first, init)
        self.graph.replace_node(self._with_attrs(p.node, param=True))
        self.params.append(p.node)
        return p

    def dims_cond_first(self, domain: Sequence[str]) -> Cond:
        from reflow.recurrent.conditions import conj

        return conj(*(var(d) == 0 for d in domain))

    def _with_attrs(self, node: str, **attrs: Any) -> Node:
        n = self.graph.node(node)
        return Node(n.name, n.op, n.inputs, n.outputs, n.cost, {**n.attrs, **attrs})

    def powers(self, gamma: float, n: Any, dtype: torch.dtype | None = None,
               reverse: bool = False) -> RecurrentTensor:
        """``gamma ** k`` for k in 0..n-1 (``reverse``: counted from the end); ``n`` may be symbolic."""
        dom = self.dims_of(n) if isinstance(n, Expr) else ()
        return self.apply("powers", [], domain=tuple(dom), gamma=float(gamma), n=n, dtype=dtype or self.dtype,
                          reverse=reverse)

    def symval(self, expr: Expr, dtype: torch.dtype | None = None) -> RecurrentTensor:
        """The value of an index expression at each point, as a tensor (``T - t``, ``i``)."""
        dom = tuple(self.dims_of(expr))
        return self.apply("symval", [], domain=dom, expr=expr, dtype=dtype or self.dtype)

    def size_value(self, n: Any, dtype: torch.dtype) -> RecurrentTensor:
        """A size (an int, or a symbolic one like ``T - t``) as a tensor."""
        if isinstance(n, Expr):
            c = n.const()
            return self.symval(n, dtype) if c is None else self.const(float(c), dtype)
        return self.const(float(n), dtype)

    def contract_over(self, a: RecurrentTensor, g: RecurrentTensor,
                      target: tuple[str, ...]) -> RecurrentTensor:
        """``sum of a^T g`` over the points outside ``target`` (a matmul's weight gradient)."""
        from reflow.recurrent.autodiff import contract_over

        return contract_over(a, g, target)

    def rand(self, shape: Sequence[int], domain: Sequence[Any], seed: int,
             dtype: torch.dtype | None = None, name: str | None = None) -> RecurrentTensor:
        """Uniform samples in (0, 1), one set per point of ``domain``, from a counter-based generator."""
        dom = self.domain_of(domain)
        label = self.fresh(name or "rand")
        return self.apply("rand", [], label=label, domain=dom, shape=tuple(shape), dtype=dtype or self.dtype,
                          key=stable_hash(seed, label), impure=True)

    def compile(self, bounds: Mapping[Any, int] | None = None, **options: Any) -> Program:
        """The program with these bounds (``compile(T=500, B=8)`` or ``compile({T: 500})``): checked,
        optimized and scheduled. Other keywords are options of
        ``reflow.recurrent.program.compile_program``."""
        from reflow.recurrent.program import OPTIONS, compile_program

        named = {str(k): int(v) for k, v in (bounds or {}).items()}
        for k, v in options.items():
            if k in self.bound_of.values():
                named[k] = int(v)
            elif k not in OPTIONS:
                from reflow.errors import MissingBound

                raise MissingBound(f"compile() got {k}={v!r}, but {k} is not a bound of this program (its "
                                   "bounds "
                                   f"are {', '.join(self.bound_of.values())}) nor an option "
                                   f"({', '.join(sorted(OPTIONS))})")
        return compile_program(self, named, **{k: v for k, v in options.items() if k in OPTIONS})
