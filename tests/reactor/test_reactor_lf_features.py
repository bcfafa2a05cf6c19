"""The LF features beyond the basics, one by one: min spacing, watchdogs, mutable inputs, physical and
repeated/interleaved connections, per-instance and updated deadlines with deadline priority, the time API,
keepalive, and a worker pool shared by runs. (LF's own programs for them run in test_lf_conformance.py.)"""

from __future__ import annotations

import threading
import time

import pytest
from reactor_programs import Log, Recorder, Source

from reflow.errors import EffectError, LifecycleError, PortConnectionError, ReactorError
from reflow.graph import Graph, Node, Port
from reflow.reactor import Reactor, Tag, clock, interleaved, msec, reaction, run
from reflow.runtime.events import ACTION, EventQueue
from reflow.runtime.priority import inferred_deadlines, ranking
from reflow.runtime.process_executor import ProcessExecutor, WorkerPool


@pytest.mark.parametrize(("policy", "expected"), [
    ("defer", [(Tag(10), 0), (Tag(20), 1), (Tag(30), 2)]),   # each pushed to last + spacing
    ("drop", [(Tag(10), 0)]),                                 # too soon: gone
    ("replace", [(Tag(10), 2)]),                              # the pending event takes the new value
    ("update", [(Tag(11), 2)]),                               # the new event replaces the pending one
])
def test_min_spacing_policies(policy: str, expected: list[tuple[Tag, int]]) -> None:
    q = EventQueue()
    for value, at in enumerate((10, 10, 11)):
        q.push_spaced(Tag(at), Tag(0), "a", value, spacing=10, policy=policy)
    out = []
    while (tag := q.peek()) is not None:
        out += [(tag, e[4]) for e in q.pop_tag(tag)]
    assert out == expected


def test_without_min_spacing_events_of_one_tag_pile_up_in_microsteps() -> None:
    q = EventQueue()
    assert [q.push(Tag(5), ACTION, "a", v) for v in range(3)] == [Tag(5, 0), Tag(5, 1), Tag(5, 2)]
    assert q.push(Tag(5), ACTION, "b", 9) == Tag(5, 0)  # another action is not in the way


def test_bad_action_settings() -> None:
    with pytest.raises(ValueError, match="policy must be one of defer, drop, replace, update"):
        Reactor("r").logical_action("a", min_spacing=5, policy="sometimes")
    with pytest.raises(ValueError, match="min_spacing >= 0"):
        Reactor("r").logical_action("a", min_spacing=-1)


class Guarded(Reactor):
    """A 50 ms watchdog that ``pet`` restarts every 5 ms until ``stop_petting``."""

    def __init__(self, log: Log, stop_petting: int) -> None:
        super().__init__("main")
        self.log = log
        self.dog = self.watchdog("dog", msec(50), handler="bark", effects="alarm")
        self.alarm = self.logical_action("alarm")
        self.t = self.timer("t", 0, msec(5))
        self.stop_petting = stop_petting

    def bark(self) -> None:
        self.log.add(self, "bark")
        self.alarm.schedule("raised")

    @reaction(triggers="t", effects="dog")
    def pet(self) -> None:
        if self.logical_time <= self.stop_petting:
            self.dog.start()

    @reaction(triggers="dog")
    def fired(self) -> None:
        self.log.add(self, "fired")

    @reaction(triggers="alarm")
    def alarmed(self) -> None:
        self.log.add(self, self.alarm.value)
        self.request_stop()


def test_a_watchdog_fires_once_its_timeout_passes_without_a_restart() -> None:
    log = Log()
    run(Guarded(log, stop_petting=msec(30)), fast=False, timeout=msec(200))
    (t1, _, w1), (t2, _, w2), (t3, _, w3) = log.items
    # last restart at 30 ms: it expires at 80 ms (tag time + timeout), its handler ahead of its reactions
    assert (t1, w1, t2, w2) == ((msec(80), 0), "bark", (msec(80), 0), "fired")
    assert (t3, w3) == ((msec(80), 1), "raised")


def test_a_watchdog_kept_alive_never_fires() -> None:
    log = Log()
    run(Guarded(log, stop_petting=msec(100)), fast=False, timeout=msec(100))
    assert log.items == []


class Doubler(Reactor):
    def __init__(self, mutable: bool) -> None:
        super().__init__("doubler")
        self.inp = self.input("in", mutable=mutable)
        self.out = self.output("out")

    @reaction(triggers="in", effects="out")
    def double(self) -> None:
        self.inp.value.append(len(self.inp.value))  # changes its own copy (if it has one)
        self.inp.value = self.inp.value * 2
        self.out.set(self.inp.value)


class Shared(Reactor):
    def __init__(self, mutable: bool) -> None:
        super().__init__("main")
        self.doubler = self.add(Doubler(mutable))
        self.seen: list[object] = []

    @reaction(triggers="startup", effects="doubler.in")
    def send(self) -> None:
        self.sent = [1]
        self.doubler.inp.set(self.sent)

    @reaction(triggers="doubler.out")
    def receive(self) -> None:
        self.seen = [self.sent, self.doubler.out.value]


def test_a_mutable_input_is_a_copy_the_reaction_may_change_and_replace() -> None:
    main = Shared(mutable=True)
    run(main, workers=2)
    assert main.seen == [[1], [1, 1, 1, 1]]  # the sender's list is untouched
    with pytest.raises(EffectError, match=r"assigns to input main\.doubler\.in, which is not mutable"):
        run(Shared(mutable=False))


def test_a_physical_connection_stamps_values_with_physical_time() -> None:
    log = Log()

    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            src, rec = self.add(Source(period=msec(5))), self.add(Recorder(log))
            self.connect(src.out, rec.inp, physical=True)

    run(Main(), fast=False, timeout=msec(20))
    got = [(t, v) for t, _, v in log.items if v != "shutdown"]
    assert [v for _, v in got] == [1, 2, 3, 4]
    for tag, v in got:  # sent at (5 ms * (v - 1), 0): arrives at a later tag, at the physical time of sending
        assert tag > (msec(5) * (v - 1), 0)


def test_a_physical_connection_breaks_a_causality_loop() -> None:
    class Echo(Reactor):
        def __init__(self) -> None:
            super().__init__("echo")
            self.inp, self.out = self.input("in"), self.output("out")
            self.n = 0

        @reaction(triggers=("startup", "in"), effects="out")
        def again(self) -> None:
            self.n += 1
            if self.n < 3:
                self.out.set(self.n)

    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.echo = self.add(Echo())
            self.connect(self.echo.out, self.echo.inp, physical=True)

    result = run(Main(), trace=True)
    assert [e.tag > Tag(0, 0) for e in result.trace] == [False, True, True]


def test_repeat_and_interleaved_pair_ports_as_lf_does() -> None:
    class Wide(Reactor):
        def __init__(self, name: str, n: int) -> None:
            super().__init__(name)
            self.i = self.input_multiport("i", n)
            self.o = self.output_multiport("o", n)

    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.a = self.bank("a", 2, lambda k: Wide("a", 3))
            self.b = self.bank("b", 3, lambda k: Wide("b", 2))
            self.c = self.add(Wide("c", 4))

    m = Main()
    assert interleaved([x.o for x in m.a]) == [m.a[0].o[0], m.a[1].o[0], m.a[0].o[1], m.a[1].o[1],
                                                m.a[0].o[2], m.a[1].o[2]]
    m.connect(interleaved([x.o for x in m.a]), [p for x in m.b for p in x.i])
    m.connect(m.b[0].o, m.c.i, repeat=True)  # (b[0].o)+ -> c.i: o0, o1, o0, o1
    wired = {(c.src.key, c.dst.key) for c in m._decl.connections}
    assert ("main.a[1].o[0]", "main.b[0].i[1]") in wired
    assert ("main.b[0].o[1]", "main.c.i[3]") in wired
    with pytest.raises(PortConnectionError, match="does not cover 3 ports evenly"):
        m.connect(m.b[1].o, m.a[0].i, repeat=True)
    with pytest.raises(PortConnectionError, match="widths must match"):
        m.connect(m.b[1].o, m.a[1].i)
    with pytest.raises(PortConnectionError, match="groups of one width"):
        interleaved([m.a[0].o, m.b[0].o])


class Lagging(Reactor):
    """A deadline per instance (an attribute's value), and one updated at run time."""

    def __init__(self, name: str, budget: int) -> None:
        super().__init__(name)
        self.budget = budget
        self.t = self.timer("t", 0, msec(5))
        self.log: list[tuple[int, str]] = []

    @reaction(triggers="t", deadline="budget", on_deadline="late")
    def work(self) -> None:
        self.log.append((self.logical_time, "on time"))
        time.sleep(0.003)
        self.update_deadline(self.budget // 2)

    def late(self) -> None:
        self.log.append((self.logical_time, "late"))


def test_deadlines_per_instance_and_updated_at_run_time() -> None:
    class Main(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.easy = self.add(Lagging("easy", msec(100)))
            self.tight = self.add(Lagging("tight", 0))

    main = Main()
    run(main, fast=False, timeout=msec(10))
    assert [w for _, w in main.easy.log] == ["on time"] * 3
    assert [w for _, w in main.tight.log] == ["late"] * 3

    class Bad(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.budget = "soon"

        @reaction(triggers="startup", deadline="budget", on_deadline="late")
        def r(self) -> None: ...

        def late(self) -> None: ...

    with pytest.raises(ReactorError, match="must hold a deadline in ns"):
        run(Bad())

    class NoDeadline(Reactor):
        @reaction(triggers="startup")
        def r(self) -> None:
            self.update_deadline(5)

    with pytest.raises(ReactorError, match="has no deadline to update"):
        run(NoDeadline("main"))


def test_inferred_deadlines_and_ranks_follow_the_graph() -> None:
    g = Graph("g")
    for n in ("a", "b", "c", "d"):
        g.add_node(Node(n, "reaction", (Port("dep", required=False),), (Port("dep"),)))
    g.connect("a", "dep", "b", "dep")  # a -> b (deadline 5); c -> d (deadline 3)
    g.connect("c", "dep", "d", "dep")
    deadlines = {"a": None, "b": 5, "c": None, "d": 3}
    assert inferred_deadlines(g, deadlines) == {"a": 5, "b": 5, "c": 3, "d": 3}
    levels = {"a": 0, "b": 1, "c": 0, "d": 1}
    r = ranking(g, levels, deadlines, {"a": 0, "b": 1, "c": 2, "d": 3})
    assert sorted(r.rank, key=r.rank.__getitem__) == ["c", "d", "a", "b"] and r.merges
    plain = ranking(g, levels, dict.fromkeys(levels), {"a": 0, "b": 1, "c": 2, "d": 3})
    assert plain.rank == levels and not plain.merges  # without deadlines, ranks are levels


def test_the_time_api_inside_and_outside_reactions() -> None:
    seen: list[tuple[int, int, int]] = []

    class Now(Reactor):
        def __init__(self) -> None:
            super().__init__("main")
            self.t = self.timer("t", msec(3))

        @reaction(triggers="t")
        def now(self) -> None:
            seen.append((clock.logical() - clock.start(), clock.logical_elapsed(), clock.tag().time))
            assert clock.physical_elapsed() >= clock.logical_elapsed()  # real time: never early
            assert abs(clock.physical() - clock.start() - self.physical_time()) < msec(1)

    run(Now(), fast=False)
    assert seen == [(msec(3), msec(3), msec(3))]
    with pytest.raises(LifecycleError, match=r"clock\.logical\(\) may only be called inside a reaction"):
        clock.logical()


def test_keepalive_waits_for_a_stop_from_another_thread_without_physical_actions() -> None:
    class Idle(Reactor):
        def __init__(self, stopper: bool) -> None:
            super().__init__("main")
            self.stopped_at = -1
            self.stopper = threading.Timer(0.05, self.request_stop) if stopper else None

        @reaction(triggers="startup")
        def start(self) -> None:
            if self.stopper is not None:
                self.stopper.start()

        @reaction(triggers="shutdown")
        def bye(self) -> None:
            self.stopped_at = self.logical_time

    quick = Idle(stopper=False)
    run(quick)
    assert quick.stopped_at == 0  # nothing to do: it ends at once
    kept = Idle(stopper=True)
    run(kept, keepalive=True)
    assert kept.stopper is not None
    kept.stopper.join()
    assert kept.stopped_at >= msec(50)  # kept alive until the stop request, at its physical time


def test_a_worker_pool_serves_several_runs_and_is_released(no_leaks: None) -> None:
    with WorkerPool(2) as pool:
        pids = list(pool.pids)
        for _ in range(3):
            main = Shared(mutable=True)
            result = run(main, executor=ProcessExecutor(pool=pool), trace=True)
            assert [e.writes for e in result.trace if e.reaction == "main.doubler.double"] == [
                (("main.doubler.out", [1, 1, 1, 1]),)]
        assert pool.pids == pids and all(p.alive() for p in pool.processes)
