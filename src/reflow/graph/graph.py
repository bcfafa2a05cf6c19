"""The one IR: a directed multigraph of named nodes with typed ports.

Every front end lowers to this. A node is an operation (``op``) with named input and output ports, a cost (the
time it takes, in seconds, as best the front end can tell) and free-form ``attrs`` for the front end's use.
An edge joins an output port to an input port and carries the size in bytes of what flows along it.

Node identity is its name: deterministic, chosen by the front end, never an ``id()`` or a uuid. Nodes keep
their insertion order, and every analysis breaks ties by that order, so results never depend on hashing.

Graphs are built with ``add_node``/``connect``; passes never mutate their input: they ``copy()`` first.

Op kinds (``Node.op``) are strings. The shared ones:

    structure   "input"      a graph input: no input ports, one output port ("out")
                "output"     a graph output: one input port ("in"), no outputs
                "const"      a constant; the value is ``attrs["value"]``
    compute     "call"       a Python callable in ``attrs["fn"]``, applied to the inputs in port order
                "reaction"   a reactor reaction (reflow.reactor); attrs name the reactor and reaction
    front ends  "onnx.<Op>"  an ONNX operator (reflow.onnx), attrs are the ONNX attributes
                "serve.<op>" a serving operator (reflow.serve)
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reflow.errors import DanglingPortError, GraphError, PortTypeError

ANY = "any"


@dataclass(frozen=True)
class Port:
    """A named port; ``dtype`` is a free-form type name, ``"any"`` matches everything."""

    name: str
    dtype: str = ANY
    required: bool = True


@dataclass(frozen=True)
class Node:
    """One operation. ``cost`` is its run time in seconds (an estimate)."""

    name: str
    op: str
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()
    cost: float = 1.0
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def input(self, port: str) -> Port:
        for p in self.inputs:
            if p.name == port:
                return p
        raise GraphError(f"node {self.name!r} ({self.op}) has no input port {port!r}; "
                         f"its inputs are {[p.name for p in self.inputs]}")

    def output(self, port: str) -> Port:
        for p in self.outputs:
            if p.name == port:
                return p
        raise GraphError(f"node {self.name!r} ({self.op}) has no output port {port!r}; "
                         f"its outputs are {[p.name for p in self.outputs]}")


@dataclass(frozen=True)
class Edge:
    """Data flowing from ``src.src_port`` to ``dst.dst_port``; ``size`` is in bytes."""

    src: str
    src_port: str
    dst: str
    dst_port: str
    size: float = 0.0


def ports(*names: str, dtype: str = ANY) -> tuple[Port, ...]:
    """Shorthand: ``ports("a", "b")`` -> two untyped ports."""
    return tuple(Port(n, dtype) for n in names)


class Graph:
    """A dataflow graph. Insertion order of nodes and edges is kept and is the tie-break everywhere."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self._nodes: dict[str, Node] = {}
        self._edges: list[Edge] = []
        self._in: dict[str, list[Edge]] = {}
        self._out: dict[str, list[Edge]] = {}

    # -- building --------------------------------------------------------------------------------------------
    def add_node(self, node: Node) -> Node:
        if node.name in self._nodes:
            raise GraphError(f"graph {self.name!r} already has a node named {node.name!r}")
        self._nodes[node.name] = node
        self._in[node.name] = []
        self._out[node.name] = []
        return node

    def add(self, name: str, op: str, inputs: Iterable[str] = (), outputs: Iterable[str] = ("out",),
            cost: float = 1.0, **attrs: Any) -> Node:
        """Convenience: add a node with untyped ports named by strings."""
        return self.add_node(Node(name, op, ports(*inputs), ports(*outputs), cost, attrs))

    def connect(self, src: str, src_port: str, dst: str, dst_port: str, size: float = 0.0) -> Edge:
        """Add an edge; checks that both ports exist and that their types agree."""
        out_port = self.node(src).output(src_port)
        in_port = self.node(dst).input(dst_port)
        if ANY not in (out_port.dtype, in_port.dtype) and out_port.dtype != in_port.dtype:
            raise PortTypeError(f"cannot connect {src}.{src_port} ({out_port.dtype}) to "
                                f"{dst}.{dst_port} ({in_port.dtype}): types differ")
        edge = Edge(src, src_port, dst, dst_port, size)
        self._edges.append(edge)
        self._out[src].append(edge)
        self._in[dst].append(edge)
        return edge

    def replace_node(self, node: Node) -> None:
        """Swap a node for one of the same name (e.g. with a new cost); edges stay."""
        if node.name not in self._nodes:
            raise GraphError(f"graph {self.name!r} has no node {node.name!r} to replace")
        self._nodes[node.name] = node

    def with_costs(self, costs: Mapping[str, float]) -> Graph:
        """A copy whose node costs are taken from ``costs`` (nodes not named keep theirs)."""
        g = self.copy()
        for name, c in costs.items():
            g._nodes[name] = replace(g.node(name), cost=c)
        return g

    # -- reading ---------------------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no node {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    @property
    def names(self) -> list[str]:
        return list(self._nodes)

    @property
    def edges(self) -> list[Edge]:
        return list(self._edges)

    def in_edges(self, name: str) -> list[Edge]:
        return list(self._in[name])

    def out_edges(self, name: str) -> list[Edge]:
        return list(self._out[name])

    def predecessors(self, name: str) -> list[str]:
        """Distinct predecessors, in edge order."""
        return list(dict.fromkeys(e.src for e in self._in[name]))

    def successors(self, name: str) -> list[str]:
        """Distinct successors, in edge order."""
        return list(dict.fromkeys(e.dst for e in self._out[name]))

    def sources(self) -> list[str]:
        return [n for n in self._nodes if not self._in[n]]

    def sinks(self) -> list[str]:
        return [n for n in self._nodes if not self._out[n]]

    def total_cost(self) -> float:
        return sum(n.cost for n in self._nodes.values())

    # -- whole-graph operations ------------------------------------------------------------------------------
    def copy(self, name: str | None = None) -> Graph:
        """A copy sharing the (immutable) nodes; attrs are shallow-copied."""
        g = Graph(self.name if name is None else name)
        for n in self._nodes.values():
            g.add_node(replace(n, attrs=_copy.copy(dict(n.attrs))))
        for e in self._edges:
            g._add_edge_unchecked(e)
        return g

    def subgraph(self, names: Iterable[str]) -> Graph:
        """The induced subgraph on ``names`` (edges with both ends inside), in this graph's node order."""
        keep = set(names)
        for name in keep:
            self.node(name)
        g = Graph(f"{self.name}/sub")
        for n in self._nodes.values():
            if n.name in keep:
                g.add_node(n)
        for e in self._edges:
            if e.src in keep and e.dst in keep:
                g._add_edge_unchecked(e)
        return g

    def without(self, names: Iterable[str]) -> Graph:
        """A copy with the given nodes and their edges removed."""
        drop = set(names)
        return self.subgraph(n for n in self._nodes if n not in drop)

    def _add_edge_unchecked(self, e: Edge) -> None:
        self._edges.append(e)
        self._out[e.src].append(e)
        self._in[e.dst].append(e)

    def validate(self, *, acyclic: bool = True) -> None:
        """Raise if a required input is dangling or driven twice, or (if ``acyclic``) on a cycle."""
        for node in self._nodes.values():
            driven: dict[str, int] = {}
            for e in self._in[node.name]:
                driven[e.dst_port] = driven.get(e.dst_port, 0) + 1
            for p in node.inputs:
                if p.required and p.name not in driven:
                    raise DanglingPortError(f"input {node.name}.{p.name} of {node.op} node {node.name!r} "
                                            "is not connected; connect it or mark the port not required")
        if acyclic:
            from reflow.graph.order import topo_order

            topo_order(self)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self._nodes)} nodes, {len(self._edges)} edges)"
