"""Random reactor DAGs with `after` delays, run by the scheduler on 1 and 3 threads, against a tiny reference
interpreter of the same semantics written independently here (the oracle)."""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from reflow.reactor import Reactor, Tag, reaction, run

TIMEOUT = 30
Edge = tuple[int, int, int | None]  # (source node, destination node, after delay or None)


class Node(Reactor):
    """Sums whatever inputs are present, adds its index, records (tag, value) and sends the result."""

    def __init__(self, index: int, fan_in: int, log: list[tuple[Tag, int, int]]) -> None:
        super().__init__(f"n{index}")
        self.index, self.log = index, log
        self.inp = self.input_multiport("in", fan_in, int, required=False)
        self.out = self.output("out", int)

    @reaction(triggers="in", effects="out")
    def step(self) -> None:
        value = sum(p.get() for p in self.inp if p.is_present) + self.index
        self.log.append((self.tag, self.index, value))
        self.out.set(value)


class Tick(Reactor):
    def __init__(self) -> None:
        super().__init__("tick")
        self.t = self.timer("t", 0, 10)
        self.out = self.output("out", int)

    @reaction(triggers="t", effects="out")
    def fire(self) -> None:
        self.out.set(1)


class Program(Reactor):
    def __init__(self, n: int, edges: list[Edge], log: list[tuple[Tag, int, int]]) -> None:
        super().__init__("main")
        fan_in = [1 + sum(1 for _, d, _ in edges if d == i) for i in range(n)]
        tick = self.add(Tick())
        nodes = [self.add(Node(i, fan_in[i], log)) for i in range(n)]
        slot = [1] * n
        self.connect(tick.out, nodes[0].inp[0])
        for s, d, after in edges:
            self.connect(nodes[s].out, nodes[d].inp[slot[d]], after=after)
            slot[d] += 1


def reference(n: int, edges: list[Edge]) -> list[tuple[Tag, int, int]]:
    """The oracle: process tags in order; at each tag, nodes in index order (edges go forward)."""
    pending: dict[Tag, dict[int, dict[int, int]]] = {}
    queue: list[Tag] = []

    def deliver(tag: Tag, node: int, slot: int, value: int) -> None:
        while slot in pending.get(tag, {}).get(node, {}):  # one event per input and tag: the next microstep
            tag = Tag(tag.time, tag.microstep + 1)
        if tag not in pending:
            pending[tag] = {}
            heapq.heappush(queue, tag)
        pending[tag].setdefault(node, {})[slot] = value

    for t in range(0, TIMEOUT + 1, 10):
        deliver(Tag(t, 0), 0, 0, 1)
    slots: list[tuple[int, int, int, int | None]] = []
    used = [1] * n
    for s, d, after in edges:
        slots.append((s, d, used[d], after))
        used[d] += 1
    out: list[tuple[Tag, int, int]] = []
    while queue:
        tag = heapq.heappop(queue)
        if tag > Tag(TIMEOUT, 0):
            break
        inputs = pending.pop(tag)
        for i in range(n):
            if i not in inputs:
                continue
            value = sum(inputs[i].values()) + i
            out.append((tag, i, value))
            for s, d, slot, after in slots:
                if s == i:
                    target = tag if after is None else tag.delay(after)
                    if after is None:
                        inputs.setdefault(d, {})[slot] = value
                    else:
                        deliver(target, d, slot, value)
    return sorted(out, key=lambda e: (e[0], e[1]))


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, list[Edge]]:
    n = draw(st.integers(2, 7))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 2), st.integers(1, n - 1),
                                    st.sampled_from([None, None, 0, 3, 10])), max_size=10))
    return n, [(s, d, a) for s, d, a in edges if s < d]


@settings(max_examples=30, deadline=None)
@given(dags())
def test_scheduler_matches_the_reference_interpreter(dag: tuple[int, list[Edge]]) -> None:
    n, edges = dag
    expected = reference(n, edges)
    for workers in (1, 3):
        log: list[tuple[Tag, int, int]] = []
        run(Program(n, edges, log), workers=workers, timeout=TIMEOUT)
        assert sorted(log, key=lambda e: (e[0], e[1])) == expected
