"""Fusion by code generation: the whole schedule becomes one Python function of straight-line torch calls.

Interpreting a schedule op by op costs tens of microseconds of bookkeeping per op, more than a small op's
kernel. So the executor generates the program instead: loops become ``for`` loops, each run becomes one
statement, and a value read by a later op of the same loop iteration, at the same point, travels in a local
variable (reshaped to the reader's axes where needed) rather than through a store. Only values read across
iterations or after their loop go to stores. What is not straight-line (a vectorized conditional
definition, a window scan, a user op) is a call of a closure the executor prepared.

``explain`` shows the generated source; ``Executor.source`` holds it.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from reflow.recurrent.conditions import Cmp, Cond, Const, Junction, Not
from reflow.recurrent.dgraph import Read, domain, is_identity, kind, outs
from reflow.recurrent.memory import IN_PLACE, loop_paths
from reflow.recurrent.ops import OPS
from reflow.recurrent.schedule import Accumulate, Free, Item, Loop, Run, offsets

if TYPE_CHECKING:
    from reflow.recurrent.execute import Executor

ENV_OPS = frozenset({"symval", "rand", "powers"})
OPERATORS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def py_cond(c: Cond, names: dict[str, str]) -> str:
    """Python source for condition ``c`` over loop variables ``names``."""
    if isinstance(c, Const):
        return "True" if c.value else "False"
    if isinstance(c, Cmp):
        env = {v: names[v] for v in c.vars()}
        return f"({_py_expr(c.a, env)} {c.op} {_py_expr(c.b, env)})"
    if isinstance(c, Junction):
        sep = " and " if c.op == "and" else " or "
        return "(" + sep.join(py_cond(p, names) for p in c.parts) + ")"
    if isinstance(c, Not):
        return f"(not {py_cond(c.c, names)})"
    raise TypeError(f"cannot generate code for condition {c}")


def _py_expr(e: Any, env: dict[str, str]) -> str:
    from reflow.recurrent.symbolic import Div, Lin, MinMax, Mod, Sum

    if isinstance(e, Lin):
        parts = [f"{c}*{env[v]}" if c != 1 else env[v] for v, c in e.coeffs]
        return "(" + " + ".join([*parts, str(e.c0)]) + ")"
    if isinstance(e, MinMax):
        return f"{e.op}({_py_expr(e.a, env)}, {_py_expr(e.b, env)})"
    if isinstance(e, Sum):
        return f"({_py_expr(e.a, env)} + {_py_expr(e.b, env)})"
    if isinstance(e, Mod):
        return f"({_py_expr(e.e, env)} % {e.k})"
    if isinstance(e, Div):
        return f"({_py_expr(e.e, env)} // {e.k})"
    raise TypeError(f"cannot generate code for {e}")


class CodeGen:
    def __init__(self, ex: Executor) -> None:
        self.ex = ex
        self.g = ex.g
        self.sched = ex.sched
        self.names: dict[str, Any] = {}
        self.lines: list[str] = []
        self.paths = loop_paths(self.sched.items)
        self.vec = {r.node: r.vec for r in self.sched.runs() if isinstance(r, Run)}
        self.skew = {r.node: r.skew for r in self.sched.runs()}
        self.run_of = {r.node: r for r in self.sched.runs()}
        self.readers: dict[tuple[str, str], list[str]] = {}
        for r in self.sched.runs():
            for rd in ex.reads[r.node]:
                self.readers.setdefault((rd.src, rd.src_port), []).append(r.node)
        self.var: dict[tuple[str, str], str] = {}
        self.loopvar: dict[str, str] = {}
        self.idents: dict[str, str] = {}

    def ident(self, text: str) -> str:
        """A Python identifier for a value: node names may hold any character (``w@k=0``)."""
        safe = re.sub(r"\W", "_", text)
        taken = safe in self.idents.values()
        return self.idents.setdefault(text, f"{safe}_{len(self.idents)}" if taken else safe)

    def obj(self, x: Any, stem: str) -> str:
        name = f"{stem}{len(self.names)}"
        self.names[name] = x
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    # -- which reads travel in local variables ---------------------------------------------------------
    def trivial(self, consumer: str, r: Read, point: bool = False, bare: bool = False) -> str | None:
        """The expression of ``r``'s value from a local variable, or None if it must come from a store.
        ``point``: the consumer accumulates over the loop it sits in, reading one point of ``r``. ``bare``:
        the consumer broadcasts from the right (torch's rule), so a value lacking only *leading* vectorized
        dims needs no reshaping."""
        src = self.g.node(r.src)
        if (r.src, r.src_port) not in self.var or self.skew.get(r.src, 0) != self.skew.get(consumer, 0):
            return None
        if point:
            return self.var[(r.src, r.src_port)] if not self.vec.get(r.src) else None
        if not is_identity(r.index, domain(src)):
            return None
        pn, pc = self.paths.get(r.src, ()), self.paths.get(consumer, ())
        if len(pn) > len(pc) or any(a is not b for a, b in zip(pn, pc, strict=False)):
            return None
        vn, vc = self.vec[r.src], self.vec[consumer]
        regions = self.sched.regions
        if any(d not in vc or regions[r.src][d] != regions[consumer][d] for d in vn):
            return None
        name = self.var[(r.src, r.src_port)]
        if tuple(vn) == tuple(vc) or (bare and tuple(vc[len(vc) - len(vn):]) == tuple(vn)):
            return name
        return name + "[" + ", ".join(":" if d in vn else "None" for d in vc) + ", ...]"

    # -- generation ------------------------------------------------------------------------------------
    def function(self) -> str:
        self.emit(0, "def program(E, BAR):")
        self.block(self.sched.items, 1, outer=True)
        self.emit(1, "return None")
        return "\n".join(self.lines) + "\n"

    def block(self, items: list[Item], depth: int, outer: bool = False, loop: Loop | None = None) -> None:
        drops = self.drop_read(loop, items) if loop is not None else {}
        for k, it in enumerate(items):
            for line in drops.get(k - 1, ()):
                self.emit(depth, line)
            if isinstance(it, Loop):
                self.loop(it, depth, outer)
            elif isinstance(it, Run):
                self.run(it, depth)
            elif isinstance(it, Accumulate):
                self.accumulate(it, depth)
            elif isinstance(it, Free):
                for n in it.nodes:
                    for (node, port), st in self.ex.stores.items():
                        if node == n and self.ex.stored[(node, port)]:
                            self.emit(depth, f"{self.obj(st, 'S')}.clear()")
                    for o in outs(self.g.node(n)):
                        if (n, o.port) in self.var:
                            self.emit(depth, f"{self.var[(n, o.port)]} = None")
        for line in drops.get(len(items) - 1, ()):
            self.emit(depth, line)

    def loop(self, loop: Loop, depth: int, outer: bool) -> None:
        lo, hi = self.ex.loop_range(loop)
        for it in loop.body:
            if isinstance(it, Accumulate):
                self.emit(depth, f"{self.obj(self.ex.stores[(it.node, 'out')], 'S')}.clear()  # sums anew")
        rng = f"range({hi - 1}, {lo - 1}, -1)" if loop.reverse else f"range({lo}, {hi})"
        v = self.loopvar[loop.dim] = f"L_{loop.dim}"
        self.emit(depth, f"for {v} in {f'BAR({rng}, {loop.dim!r})' if outer else rng}:")
        self.emit(depth + 1, f"E[{loop.dim!r}] = {v}")
        made = self.made_in(loop.body)
        self.forget(made, depth + 1)
        self.drop_stale(loop, v, depth + 1)
        self.block(loop.body, depth + 1, loop=loop)
        self.forget(made, depth)

    def made_in(self, items: list[Item]) -> list[str]:
        """The locals of the values made in ``items`` (at any depth)."""
        def walk(its: list[Item]) -> list[str]:
            out: list[str] = []
            for it in its:
                if isinstance(it, Run):
                    out += [self.ident(f"v_{it.node}_{o.port}") for o in outs(self.g.node(it.node))]
                elif isinstance(it, Loop):
                    out += walk(it.body)
            return out
        return walk(items)

    def forget(self, names: list[str], depth: int) -> None:
        """Drop the locals of a loop's values at the start of each iteration and after the loop: no one reads
        them there (a read across iterations or after the loop goes through a store), and a local would
        keep the previous iteration's value alive past its last reader."""
        for k in range(0, len(names), 8):
            self.emit(depth, " = ".join(names[k:k + 8]) + " = None")

    def carried(self, node: str, port: str, loop: Loop) -> tuple[Any, int, str] | None:
        """A value kept in a ring along ``loop`` (its store, ring size and ``drop`` arguments selecting the
        slots of index ``@AT`` along the loop, at the current indices of the loops outside it), if neither
        its maker nor a reader runs behind the loop (skewed runs keep their rings whole)."""
        st = self.ex.stores.get((node, port))
        if st is None or not self.ex.stored[(node, port)] or loop.dim not in st.ring:
            return None
        if loop not in self.paths.get(node, ()) or isinstance(self.run_of.get(node), Accumulate):
            return None
        if self.skew.get(node) or any(self.skew.get(c) for c in self.readers.get((node, port), ())):
            return None
        path = self.paths[node]
        outer = [lp.dim for lp in path[:path.index(loop)]]
        match = [f"{pos}: (@AT) % {size}" if d == loop.dim else f"{pos}: {self.loopvar[d]} % {size}"
                 for pos, (d, size) in enumerate(st.rings) if d == loop.dim or d in outer]
        return st, dict(st.rings)[loop.dim], "{" + ", ".join(match) + "}"

    def drop_stale(self, loop: Loop, v: str, depth: int) -> None:
        """At the start of an iteration, drop each ring slot along the loop that its maker is about to
        overwrite: the slot holds a value ``size`` iterations old, which no reader reaches (a ring is one
        longer than the farthest read back), so it need not wait for the write to be freed."""
        for node, port in self.ex.stores:
            got = self.carried(node, port, loop)
            if got is not None:
                st, _, sel = got
                lo, hi = self.sched.regions[node][loop.dim]
                self.emit(depth, f"if {lo} <= {v} < {hi}: {self.obj(st, 'S')}.drop({sel.replace('@AT', v)})")

    def drop_read(self, loop: Loop, items: list[Item]) -> dict[int, list[str]]:
        """Lines to run after item k of a loop's body: after the last reader in this iteration of a value
        carried along the loop, drop the oldest value in its ring, which the next iteration no longer
        reaches (a parameter's optimizer state ``m[i-1]`` is then freed once ``m[i]``'s first term is made,
        not when ``m[i]`` replaces it)."""
        v = self.loopvar[loop.dim]
        last: dict[tuple[str, str], int] = {}
        for k, it in enumerate(items):
            for node in self.nodes_in(it):
                for r in self.ex.reads.get(node, []):
                    dom = domain(self.g.node(r.src))
                    if loop.dim not in dom:
                        continue
                    region = self.sched.regions[node]
                    if loop.dim not in region or offsets(r.index[dom.index(loop.dim)], loop.dim,
                                                         region) != (0, 0):
                        last[(r.src, r.src_port)] = k  # may read an earlier iteration's value
        out: dict[int, list[str]] = {}
        for (node, port), k in last.items():
            got = self.carried(node, port, loop)
            if got is None or got[1] < 2:
                continue
            st, size, sel = got
            at = f"{v} - {size - 1}"
            lo, hi = self.sched.regions[node][loop.dim]
            sel = sel.replace("@AT", at)
            out.setdefault(k, []).append(f"if {lo} <= {at} < {hi}: {self.obj(st, 'S')}.drop({sel})")
        return out

    def nodes_in(self, it: Item) -> list[str]:
        if isinstance(it, (Run, Accumulate)):
            return [it.node]
        if isinstance(it, Loop):
            return [n for x in it.body for n in self.nodes_in(x)]
        return []

    def shifted(self, node: str, skew: int, depth: int) -> tuple[int, str | None]:
        """Set up a run ``skew`` iterations behind its loop: the loop variable it sees, and E's entry."""
        if not skew:
            return depth, None
        d = next(d for d in reversed(self.loopvar) if d in self.paths_dims(node))
        outer = self.loopvar[d]
        inner = f"{outer}_{skew}"
        self.emit(depth, f"{inner} = {outer} - {skew}")
        self.loopvar[d] = inner
        return depth, d

    def paths_dims(self, node: str) -> list[str]:
        return [lp.dim for lp in self.paths.get(node, ())]

    def unshift(self, d: str | None, skew: int, depth: int) -> None:
        if d is not None:
            outer = self.loopvar[d][: -len(f"_{skew}")]
            self.loopvar[d] = outer
            self.emit(depth, f"E[{d!r}] = {outer}")

    def accumulate(self, acc: Accumulate, depth: int) -> None:
        (r,) = self.ex.reads[acc.node]
        depth0 = depth
        depth, d = self.shifted(acc.node, acc.skew, depth)
        assert d is not None or acc.skew == 0
        dim = d or self.paths_dims(acc.node)[-1]
        region = self.sched.regions[r.src]
        guards = " and ".join(f"{region[x][0]} <= {self.loopvar[x]} < {region[x][1]}"
                              for x in self.paths_dims(acc.node) if x in region)
        self.emit(depth, f"if {guards or 'True'}:")
        self.emit(depth + 1, f"E[{dim!r}] = {self.loopvar[dim]}")
        arg = self.trivial(acc.node, r, point=True)
        if arg is None:
            run = Run(acc.node, ())
            arg = f"{self.obj(self.ex.reader(run, self._point_read(r, dim)), 'R')}.read(E)"
        self.emit(depth + 1, f"{self.obj(self.ex.stores[(acc.node, 'out')], 'S')}.accumulate(E, {arg})")
        self.unshift(d, acc.skew, depth0)

    def _point_read(self, r: Read, d: str) -> Read:
        from reflow.recurrent.symbolic import var

        src_dom = domain(self.g.node(r.src))
        return Read(r.port, r.src, r.src_port, tuple(var(d) if x == d else e for x, e in zip(src_dom, r.index,
                                                                                             strict=True)))

    def run(self, run: Run, depth: int) -> None:
        depth0 = depth
        depth, d = self.shifted(run.node, run.skew, depth)
        if d is not None:
            self.emit(depth, f"E[{d!r}] = {self.loopvar[d]}")
        self._run(run, depth)
        self.unshift(d, run.skew, depth0)

    def _run(self, run: Run, depth: int) -> None:
        n = self.g.node(run.node)
        k = kind(n)
        region = self.sched.regions[run.node]
        guards = []
        for d in domain(n):
            if d in run.vec:
                continue
            lo, hi = region[d]
            rlo, rhi = self.ex.loop_span[run.node][d]
            if (lo, hi) != (rlo - (run.skew if d == self.paths_dims(run.node)[-1] else 0),
                            rhi - (run.skew if d == self.paths_dims(run.node)[-1] else 0)) or run.skew:
                guards.append(f"{lo} <= {self.loopvar[d]} < {hi}")
        if guards:
            self.emit(depth, f"if {' and '.join(guards)}:")
            depth += 1
        targets = [self.ident(f"v_{run.node}_{o.port}") for o in outs(n)]
        rds = self.ex.reads[run.node]
        bare = self.broadcasts(run, k)
        args = [self.arg(run, r, bare[pos]) if r.src in self.ex.runs else "" for pos, r in enumerate(rds)]
        expr = self.compute(run, k, args, depth)
        self.emit(depth, f"{', '.join(targets)} = {expr}")
        if expr.startswith("m_"):
            self.emit(depth, f"{expr} = None")  # the merge's pick lives on in its target only
        full = self.ex.full_shape(run)
        for o, t in zip(outs(n), targets, strict=True):
            if full is not None and not self.ex.covers(run):
                self.emit(depth, f"if {t}.shape[:{len(full)}] != {full}: {t} = {t}.expand({full} + "
                                 f"tuple({t}.shape[{len(full)}:]))")
            self.var[(run.node, o.port)] = t
            st = self.ex.stores.get((run.node, o.port))
            if st is not None and self.ex.stored[(run.node, o.port)]:
                self.emit(depth, f"{self.obj(st, 'S')}.write(E, {t})")

    def arg(self, run: Run, r: Read, bare: bool) -> str:
        """The expression of one input: a local variable, or a store's reader (a case needed nowhere has no
        run, hence no argument)."""
        return self.trivial(run.node, r, bare=bare) or f"{self.obj(self.ex.reader(run, r), 'R')}.read(E)"

    def broadcasts(self, run: Run, k: str) -> list[bool]:
        """Per input: whether the generated expression broadcasts it from the right (no reshaping needed)."""
        n_in = len(self.ex.reads[run.node])
        ranks = self.ex.spatial_ranks(run) if k in OPS else []
        if (k in OPERATORS or k in IN_PLACE) and len(set(ranks)) <= 1:
            return [True] * n_in
        if k == "matmul" and self.ex.weight_is_shared(run):
            return [False, True]
        return [False] * n_in

    def compute(self, run: Run, k: str, args: list[str], depth: int) -> str:
        n = self.g.node(run.node)
        if k in ("merge", "window", "udf") or k in ENV_OPS:
            if k == "merge" and self.ex.point_merge(run):
                return self.point_merge(run, args, depth)
            if k == "udf":
                fn = self.obj(n.attrs["fn"], "F")
                fixed = ", ".join(f"{d!r}: {self.loopvar[d]}" for d in domain(n) if d not in run.vec)
                call = f"{fn}({{{fixed}}}, {', '.join(args)})"
                return call if len(outs(n)) > 1 else f"_one({call})"
            return f"{self.obj(self.ex.closure(run), 'C')}(E)[0]"
        if k == "index":
            return args[0]
        nb = len(run.vec)
        donate = next((p for p, r in enumerate(self.ex.reads[run.node]) if r.port == run.donate), None)
        ranks = self.ex.spatial_ranks(run)
        if donate is not None and k in IN_PLACE and len(set(ranks)) == 1:
            rest = args[:donate] + args[donate + 1:]
            return f"{args[donate]}.{IN_PLACE[k]}({', '.join(rest)})"
        if k in OPERATORS and len(set(ranks)) == 1:
            return f"({args[0]} {OPERATORS[k]} {args[1]})"
        if k == "matmul" and self.ex.weight_is_shared(run) and ".read(E)" not in args[1]:
            return f"({args[0]} @ {args[1]})"  # the weight's own local: no batch axes
        kern = self.obj(functools.partial(OPS[k].kernel, n.attrs, nb, None), "K")
        return f"{kern}({', '.join(args)})"

    def point_merge(self, run: Run, args: list[str], depth: int) -> str:
        n = self.g.node(run.node)
        target = self.ident(f"m_{run.node}")
        live = [(b, a) for b, a in zip(n.attrs["branches"], args, strict=True) if a]
        for pos, (b, a) in enumerate(live):
            word = "if" if pos == 0 else "elif"
            self.emit(depth, f"{word} {py_cond(b.cond, self.loopvar)}:")
            self.emit(depth + 1, f"{target} = {a}")
        err = self.obj(self.ex.no_case(run), "X")
        self.emit(depth, "else:")
        self.emit(depth + 1, f"{err}(E)")
        return target
