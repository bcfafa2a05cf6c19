"""The executor contract: batches of independent invocations, results in batch order, errors as results."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Mapping, Sequence

import pytest

from reflow.graph import Graph
from reflow.reactor import Reactor, reaction, run
from reflow.runtime import Executor, Invocation, ReactionHost, Result, Tag, ThreadExecutor
from reflow.runtime.executor import Scheduled


class Echo:
    """A host that writes its input back, after a delay that makes later invocations finish first."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.threads: set[str] = set()

    def react(self, inv: Invocation) -> Result:
        self.threads.add(threading.current_thread().name)
        time.sleep(0.01 * (3 - inv.reaction))
        if inv.values.get("boom"):
            raise RuntimeError(f"{self.path} exploded")
        return Result(inv.reactor, inv.reaction, inv.name, writes={f"{self.path}.out": inv.values["x"]},
                      schedules=[Scheduled(f"{self.path}.a", 5, "v")])


def test_thread_executor_keeps_batch_order_and_captures_errors() -> None:
    hosts = {f"h{i}": Echo(f"h{i}") for i in range(3)}
    batch = [Invocation(f"h{i}", i, f"h{i}.r", Tag(0), {"x": i, "boom": i == 1}) for i in range(3)]
    with ThreadExecutor(3) as ex:
        ex.start(hosts, Graph())
        results = ex.run_batch(batch)
        assert [r.name for r in results] == ["h0.r", "h1.r", "h2.r"]
        assert results[0].writes == {"h0.out": 0} and results[2].schedules == [Scheduled("h2.a", 5, "v")]
        assert isinstance(results[1].error, RuntimeError) and "h1 exploded" in results[1].error_text
        assert set(ex.measured_costs()) == {"h0.r", "h1.r", "h2.r"}
        assert ex.measured_costs()["h0.r"] >= 0.02
    assert len(set().union(*(h.threads for h in hosts.values()))) >= 2


def test_thread_executor_rejects_zero_workers() -> None:
    with pytest.raises(ValueError, match="at least 1 worker"):
        ThreadExecutor(0)


class Recording(Executor):
    """A sequential executor that records every batch; a stand-in for a process executor."""

    def __init__(self) -> None:
        super().__init__()
        self.workers = 1
        self.batches: list[list[Invocation]] = []
        self.graph: Graph | None = None
        self.closed = False

    def start(self, hosts: Mapping[str, ReactionHost], graph: Graph) -> None:
        super().start(hosts, graph)
        self.graph = graph

    def run_batch(self, batch: Sequence[Invocation]) -> list[Result]:
        self.batches.append(list(batch))
        return [self._hosts[inv.reactor].react(inv) for inv in batch]

    def close(self) -> None:
        super().close()
        self.closed = True


class Leaf(Reactor):
    def __init__(self) -> None:
        super().__init__("leaf")
        self.inp = self.input("in", int)
        self.out = self.output("out", int)
        self.total = 0

    @reaction(triggers="in", effects="out")
    def acc(self) -> None:
        self.total += self.inp.get()
        self.out.set(self.total)


class Star(Reactor):
    def __init__(self, width: int) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, 1)
        self.leaves = self.bank("leaves", width, lambda i: Leaf())
        self.n = 0

    @reaction(triggers="t", effects="leaves.in")
    def feed(self) -> None:
        self.n += 1
        for i, leaf in enumerate(self.leaves):
            leaf.inp.set(self.n * (i + 1))

    @reaction(triggers="leaves.out")
    def collect(self) -> None:
        self.last = [leaf.out.get() for leaf in self.leaves]


def test_scheduler_uses_the_given_executor_and_closes_it() -> None:
    ex = Recording()
    main = Star(3)
    run(main, executor=ex, timeout=2)
    assert ex.closed and ex.graph is not None and len(ex.graph) == 5
    for batch in ex.batches:
        reactors = [inv.reactor for inv in batch]
        assert len(reactors) == len(set(reactors))  # a host is never entered twice in one batch
    widths = [len(b) for b in ex.batches]
    assert widths == [1, 3, 1] * 3  # feed | three leaves in parallel | collect, at each of 3 tags
    leaf_inv = ex.batches[1][0]
    assert leaf_inv.values == {"main.leaves[0].in": 1} and leaf_inv.tag == Tag(0)
    assert main.last == [6, 12, 18]


def test_reactors_pickle_and_react_in_a_copy() -> None:
    """What a process executor relies on: a pickled reactor runs invocations on its own copy of state."""
    ex = Recording()
    main = Star(2)
    run(main, executor=ex, timeout=0)
    copy = pickle.loads(pickle.dumps(main.leaves[1]))
    res = copy.react(Invocation("main.leaves[1]", 0, "main.leaves[1].acc", Tag(5), {"main.leaves[1].in": 10}))
    assert res.error is None and res.writes == {"main.leaves[1].out": 12}
    assert copy.total == 12 and main.leaves[1].total == 2
    assert copy.path == "main.leaves[1]" and copy.parent is None  # its own subtree only, paths kept
    tree = pickle.loads(pickle.dumps(main))
    assert [leaf.parent is tree for leaf in tree.leaves] == [True, True]


def test_no_worker_threads_outlive_a_run() -> None:
    run(Star(4), workers=3, timeout=3)
    assert not [t for t in threading.enumerate() if t.name.startswith("reflow-reaction")]
