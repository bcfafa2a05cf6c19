"""Reading the dependence graph: what each node reads, at which index, and the graph's cycles.

Every input of a node is read at an index tuple (one entry per dimension of the input's domain): an ``index``
node's own entries, a ``merge`` branch's index, or, for every other op, the identity (``x[b, i, t]`` read at
``b, i, t``, so an op broadcasts inputs over the dimensions they lack). ``reads`` gives them uniformly, so the
interpreter, the analyses and the scheduler treat all edges alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from reflow.graph.graph import Graph, Node
from reflow.recurrent.conditions import TRUE, Cond
from reflow.recurrent.context import Branch, Out
from reflow.recurrent.symbolic import Entry, Expr, Slice, var


@dataclass(frozen=True)
class Read:
    """Input ``port`` of a node reads ``src.src_port`` at ``index`` where ``cond`` holds."""

    port: str
    src: str
    src_port: str
    index: tuple[Entry, ...]
    cond: Cond = TRUE
    branch: int = -1  # the merge branch, or -1


def kind(n: Node) -> str:
    return n.op[3:] if n.op.startswith("rt.") else n.op


def domain(n: Node) -> tuple[str, ...]:
    d: tuple[str, ...] = n.attrs["domain"]
    return d


def outs(n: Node) -> tuple[Out, ...]:
    o: tuple[Out, ...] = n.attrs["outs"]
    return o


def out(n: Node, port: str) -> Out:
    return next(o for o in outs(n) if o.port == port)


def label(n: Node) -> str:
    return str(n.attrs.get("label", n.name))


def identity(dom: tuple[str, ...]) -> tuple[Entry, ...]:
    return tuple(var(d) for d in dom)


def is_identity(index: tuple[Entry, ...], dom: tuple[str, ...]) -> bool:
    return all(isinstance(e, Expr) and e.same(var(d)) for d, e in zip(dom, index, strict=True))


def reads(g: Graph, name: str) -> list[Read]:
    """The inputs of ``name`` in port order, each with the index it is read at."""
    n = g.node(name)
    k = kind(n)
    feed = {e.dst_port: e for e in g.in_edges(name)}
    out: list[Read] = []
    for pos, p in enumerate(n.inputs):
        e = feed[p.name]
        src_dom = domain(g.node(e.src))
        if k in ("index", "window"):
            out.append(Read(p.name, e.src, e.src_port, tuple(n.attrs["index"])))
        elif k == "merge":
            br: Branch = n.attrs["branches"][pos]
            out.append(Read(p.name, e.src, e.src_port, br.index, br.cond, pos))
        else:
            out.append(Read(p.name, e.src, e.src_port, identity(src_dom)))
    return out


def slices(index: tuple[Entry, ...]) -> list[int]:
    return [k for k, e in enumerate(index) if isinstance(e, Slice)]


def sccs(g: Graph) -> list[list[str]]:
    """Strongly connected components, in topological order of the condensation (sources first); ties by
    node insertion order. Iterative Tarjan, so deep graphs do not hit the recursion limit."""
    return components(g.names, g.successors)


def components(names: list[str], successors: Callable[[str], list[str]]) -> list[list[str]]:
    """``sccs`` of any graph given by its nodes (in tie-break order) and a successor function."""
    order = {n: i for i, n in enumerate(names)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    counter = 0
    for root in names:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(successors(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(successors(w))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp: list[str] = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                comps.append(sorted(comp, key=order.__getitem__))
    comps.reverse()  # Tarjan emits sinks first
    return _stable_topo(successors, comps, order)


def _stable_topo(successors: Callable[[str], list[str]], comps: list[list[str]],
                 order: dict[str, int]) -> list[list[str]]:
    """Topological order of components, earliest-inserted first among the ready ones (deterministic)."""
    import heapq

    comp_of = {n: k for k, c in enumerate(comps) for n in c}
    succ: dict[int, set[int]] = {k: set() for k in range(len(comps))}
    indeg = dict.fromkeys(range(len(comps)), 0)
    for n in comp_of:
        for m in successors(n):
            a, b = comp_of[n], comp_of[m]
            if a != b and b not in succ[a]:
                succ[a].add(b)
                indeg[b] += 1
    ready = [(order[comps[k][0]], k) for k in indeg if indeg[k] == 0]
    heapq.heapify(ready)
    out: list[list[str]] = []
    while ready:
        _, k = heapq.heappop(ready)
        out.append(comps[k])
        for s in succ[k]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(ready, (order[comps[s][0]], s))
    return out
