"""The reference interpreter: the semantics oracle every pass and runtime is tested against.

Deliberately tiny and slow: nodes run one at a time in topological order, values live in a dict keyed by
(node, output port).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reflow.errors import GraphError
from reflow.graph.graph import Graph, Node
from reflow.graph.order import topo_order

Impls = Mapping[str, Callable[..., Any]]


def run_node(node: Node, args: list[Any], inputs: Mapping[str, Any], impls: Impls) -> Any:
    """The value(s) ``node`` produces from ``args`` (its input values in port order)."""
    if node.op == "input":
        if node.name not in inputs:
            raise GraphError(f"no value given for input node {node.name!r}; pass inputs[{node.name!r}]")
        return inputs[node.name]
    if node.op == "const":
        return node.attrs["value"]
    if node.op == "call":
        return node.attrs["fn"](*args)
    if node.op == "output":
        return args[0]
    if node.op == "fused":
        inner = Graph(node.name)
        for m in node.attrs["nodes"]:
            inner.add_node(m)
        for e in node.attrs["edges"]:
            inner.connect(e.src, e.src_port, e.dst, e.dst_port, e.size)
        head = node.attrs["members"][0]
        given = {(head, p.name): a for p, a in zip(node.inputs, args, strict=True)}
        return _evaluate(inner, inputs, impls, given)[node.attrs["members"][-1]]
    if node.op not in impls:
        raise GraphError(f"no implementation for op {node.op!r} of node {node.name!r}; "
                         f"pass impls[{node.op!r}]")
    return impls[node.op](node, *args)


def _evaluate(g: Graph, inputs: Mapping[str, Any], impls: Impls, given: dict[tuple[str, str], Any]) \
        -> dict[str, Any]:
    values: dict[tuple[str, str], Any] = {}
    results: dict[str, Any] = {}
    for name in topo_order(g):
        node = g.node(name)
        feed = {e.dst_port: values[(e.src, e.src_port)] for e in g.in_edges(name)}
        args = [feed[p.name] if p.name in feed else given.get((name, p.name)) for p in node.inputs]
        result = results[name] = run_node(node, args, inputs, impls)
        if len(node.outputs) == 1:
            values[(name, node.outputs[0].name)] = result
        elif node.outputs:
            for p, v in zip(node.outputs, result, strict=True):
                values[(name, p.name)] = v
    return results


def evaluate(g: Graph, inputs: Mapping[str, Any], impls: Impls | None = None) -> dict[str, Any]:
    """Run ``g``; returns {output node: value}, or {sink: value} if the graph has no output nodes."""
    results = _evaluate(g, inputs, impls or {}, {})
    keys = [n.name for n in g if n.op == "output"] or g.sinks()
    return {k: results[k] for k in keys}
