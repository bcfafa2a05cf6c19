"""The memory plan of a schedule: how long each value lives, where it is freed, which buffers are reused.

For a node made inside loops, and each loop around it:
- a reader in the same loop iteration needs only the current value (ring of 1);
- a reader ``w`` iterations later (``x[t - w]``, or the next iteration's ``w[i - 1]``) needs a ring of
  ``w + 1``;
- a reader after the loop (the learner reading the whole episode) needs a block over the loop's range.
A value is freed after its last reader in the innermost scope that holds its maker and all its readers, unless
that scope's loop carries it into the next iteration (then the ring recycles it, and the generated code
drops a ring slot as soon as no reader reaches it: ``CodeGen.drop_read``, ``CodeGen.drop_stale``). An
elementwise op whose input has no other reader and dies right after it is given that input's buffer for its
result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from reflow.graph.graph import Graph
from reflow.recurrent.dgraph import Read, domain, kind, outs
from reflow.recurrent.ops import OPS, same_shape
from reflow.recurrent.schedule import Accumulate, Free, Item, Loop, Run, Schedule, offsets, ragged

# Ops whose result may share memory with an input (so it is not theirs to give away).
VIEW_OPS = frozenset({"detach", "ident", "reshape", "squeeze", "unsqueeze", "expand", "permute", "sum_to",
                      "cast",                       "const", "powers", "index", "merge", "udf", "take"})
IN_PLACE = {"add": "add_", "sub": "sub_", "mul": "mul_", "div": "div_", "neg": "neg_", "exp": "exp_",
            "log": "log_", "tanh": "tanh_", "relu": "relu_", "sigmoid": "sigmoid_", "sqrt": "sqrt_",
            "abs": "abs_", "pow": "pow_"}


def loop_paths(items: list[Item]) -> dict[str, tuple[Loop, ...]]:
    """The loops around each node's run, outermost first."""
    out: dict[str, tuple[Loop, ...]] = {}

    def walk(its: list[Item], path: tuple[Loop, ...]) -> None:
        for it in its:
            if isinstance(it, (Run, Accumulate)):
                out[it.node] = path
            elif isinstance(it, Loop):
                walk(it.body, (*path, it))
    walk(items, ())
    return out


def plan_memory(sched: Schedule, g: Graph, rds: dict[str, list[Read]], roots: Sequence[str],
                whole: Sequence[str] = ()) -> None:
    """Fill ``sched.keep`` (per node output), insert ``Free`` items and mark donations; ``whole``: nodes
    returned whole."""
    paths = loop_paths(sched.items)
    consumers: dict[str, list[tuple[str, Read]]] = {n: [] for n in paths}
    for n in paths:
        for r in rds[n]:
            if r.src in consumers:
                consumers[r.src].append((n, r))
    keep_all = set(roots)
    skew = {it.node: it.skew for it in sched.runs()}
    accumulators = {it.node for it in sched.runs() if isinstance(it, Accumulate)}
    for n, path in paths.items():
        for o in outs(g.node(n)):
            keep: dict[str, int] = {}
            for k, loop in enumerate(path):
                if loop.dim not in domain(g.node(n)):
                    continue  # an accumulator: one value, added to across the loop
                size = 1
                for c, r in consumers[n]:
                    if r.src_port != o.port:
                        continue
                    cpath = paths[c]
                    if len(cpath) <= k or cpath[k] is not loop:
                        size = 0  # read after the loop: keep the whole range
                        break
                    if c in accumulators:  # reads the point its skew says, in the same iteration as ours
                        size = max(size, skew[c] - skew[n] + 1)
                        continue
                    off = offsets(r.index[domain(g.node(n)).index(loop.dim)], loop.dim, sched.regions[c])
                    back = off[1] if loop.reverse else -off[0]  # how many iterations ago, in execution order
                    size = max(size, skew[c] - skew[n] + back + 1)
                if n in whole:
                    size = 0  # requested outputs are returned whole
                if size == 0 and ragged(g.node(n), loop.dim):
                    lo, hi = sched.regions[n][loop.dim]
                    size = hi - lo  # one value per iteration, each its own size: keep them all, uncopied
                keep[loop.dim] = size
            sched.keep[(n, o.port)] = keep
    _place_frees(sched, g, paths, consumers, keep_all)
    _donate(sched, g, rds, consumers, keep_all)


def _scope_of(items: list[Item], n: str) -> int | None:
    """Index of the item of ``items`` that is or contains the run of ``n``."""
    for k, it in enumerate(items):
        if isinstance(it, (Run, Accumulate)) and it.node == n:
            return k
        if isinstance(it, Loop) and _scope_of(it.body, n) is not None:
            return k
    return None


def _place_frees(sched: Schedule, g: Graph, paths: dict[str, tuple[Loop, ...]],
                 consumers: dict[str, list[tuple[str, Read]]], keep_all: set[str]) -> None:
    after: dict[int, dict[int, list[str]]] = {}  # id(body) -> item index -> nodes to free after it
    bodies: dict[int, list[Item]] = {id(sched.items): sched.items}
    for n, path in paths.items():
        if n in keep_all:
            continue
        readers = [c for c, _ in consumers[n]]
        common = list(path)
        for c in readers:
            cp = paths[c]
            k = 0
            while k < len(common) and k < len(cp) and cp[k] is common[k]:
                k += 1
            common = common[:k]
        body = common[-1].body if common else sched.items
        if any(sched.keep[(n, o.port)].get(loop.dim, 1) != 1 for loop in common for o in outs(g.node(n))):
            continue  # carried into a later iteration: its ring recycles it
        last = max((_scope_of(body, c) or 0 for c in readers), default=_scope_of(body, n) or 0)
        last = max(last, _scope_of(body, n) or 0)
        bodies[id(body)] = body
        after.setdefault(id(body), {}).setdefault(last, []).append(n)
    for key, marks in after.items():
        body = bodies[key]
        for idx in sorted(marks, reverse=True):
            body.insert(idx + 1, Free(sorted(marks[idx])))


def _donate(sched: Schedule, g: Graph, rds: dict[str, list[Read]],
            consumers: dict[str, list[tuple[str, Read]]],
            keep_all: set[str]) -> None:
    def visit(items: list[Item]) -> None:
        for k, it in enumerate(items):
            if isinstance(it, Loop):
                visit(it.body)
            if not isinstance(it, Run) or kind(g.node(it.node)) not in IN_PLACE:
                continue
            after = items[k + 1] if k + 1 < len(items) else None
            freed = after.nodes if isinstance(after, Free) else []
            node = g.node(it.node)
            (o,) = outs(node)
            for pos, r in enumerate(rds[it.node]):
                if kind(node) in ("sub", "div", "pow") and pos != 0:
                    break
                src = g.node(r.src)
                if (r.src not in freed or r.src in keep_all or kind(src) in VIEW_OPS or kind(src) not in OPS
                        or len(consumers[r.src]) != 1 or domain(src) != domain(node)
                        or sched.regions[r.src] != sched.regions[it.node]):
                    continue
                (so,) = outs(src) if len(outs(src)) == 1 else (None,)
                if so is None or so.dtype != o.dtype or not same_shape(so.shape, o.shape):
                    continue
                prev = next((x for x in sched.runs() if x.node == r.src), None)
                if not isinstance(prev, Run) or prev.vec != it.vec or prev.skew != it.skew or any(
                        v != 1 for v in sched.keep[(r.src, r.src_port)].values()):
                    continue
                it.donate = r.port
                break
    visit(sched.items)


def store_bytes(sched: Schedule, g: Graph, node: str, port: str) -> int:
    """Bytes a node's store holds at most: the value over its vectorized region, times ring sizes and
    block lengths."""
    n = g.node(node)
    o = next(x for x in outs(n) if x.port == port)
    if any(not isinstance(d, int) for d in o.shape):
        return 0  # ragged windows: small, and not known here
    per = int(math.prod(int(d) for d in o.shape)) * torch.empty((), dtype=o.dtype).element_size()
    keep = sched.keep.get((node, port), {})
    region = sched.regions.get(node, {})
    for d in domain(n):
        lo, hi = region.get(d, (0, 1))
        size = keep.get(d)
        per *= (hi - lo) if size in (None, 0) else min(size, hi - lo)
    return per


def estimate(sched: Schedule, g: Graph) -> int:
    """An upper bound of the bytes the schedule keeps at once: every store kept across a loop (a ring or a
    block) at its largest, plus the largest value made in one go."""
    total, largest = 0, 0
    for it in sched.runs():
        for o in outs(g.node(it.node)):
            b = store_bytes(sched, g, it.node, o.port)
            if sched.keep.get((it.node, o.port)):
                total += b
            largest = max(largest, b)
    return total + largest


def plan_offload(prog: object, budget: int) -> None:
    """Keep the largest blocks on disk while their loop runs, until the estimate fits ``budget``."""
    from reflow.recurrent.dgraph import reads

    sched: Schedule = prog.schedule  # type: ignore[attr-defined]
    g: Graph = prog.graph  # type: ignore[attr-defined]
    paths = loop_paths(sched.items)
    inside: set[tuple[str, str]] = set()  # blocks read while their loop still fills them: kept in memory
    for c, path in paths.items():
        for r in reads(g, c):
            keep = sched.keep.get((r.src, r.src_port), {})
            if any(loop in path and keep.get(loop.dim) == 0 for loop in paths.get(r.src, ())):
                inside.add((r.src, r.src_port))
    blocks = sorted(((store_bytes(sched, g, n, p), n, p) for (n, p), keep in sched.keep.items()
                     if 0 in keep.values() and (n, p) not in inside), reverse=True)
    over = prog.memory_estimate - budget  # type: ignore[attr-defined]
    for size, n, p in blocks:
        if over <= 0:
            break
        prog.offload.add((n, p))  # type: ignore[attr-defined]
        over -= size
