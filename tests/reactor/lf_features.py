"""LF test programs, translated: multiports, banks, interleaving and ``(x)+``, mutable inputs, unconnected
ports, min spacing, physical actions and connections, watchdogs, the time API (test/Python/src and
test/C/src).

Programs LF runs in real time for seconds run here scaled down (times noted at each); their checks are kept.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from lf_lib import Count, TestCount, check, lf

from reflow.reactor import Reactor, clock, interleaved, msec, reaction, sec

P = "test/Python/src/"
C = "test/C/src/"


# --- multiport/BankToBank.lf ---
class StepSource(Reactor):
    def __init__(self) -> None:
        super().__init__("a")
        self.t = self.timer("t", 0, msec(200))
        self.out = self.output("out")
        self.s = 0

    @reaction(triggers="t", effects="out")
    def tick(self) -> None:
        self.out.set(self.s)
        self.s += self.bank_index


class StepDestination(Reactor):
    def __init__(self) -> None:
        super().__init__("b")
        self.inp = self.input("in")
        self.s = 0

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.inp.value == self.s, f"ERROR: Expected {self.s}")
        self.s += self.bank_index

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.s != 0 or self.bank_index == 0, f"ERROR: Destination {self.bank_index} received no input!")


class BankToBank(Reactor):
    def __init__(self, width: int = 4) -> None:
        super().__init__("main")
        a = self.bank("a", width, lambda i: StepSource())
        b = self.bank("b", width, lambda i: StepDestination())
        self.connect([x.out for x in a], [x.inp for x in b])


@lf(P + "multiport/BankToBank.lf", timeout=sec(2))
def bank_to_bank() -> Reactor:
    return BankToBank()


# --- multiport/BankToMultiport.lf, multiport/MultiportFromBank.lf ---
class IndexSource(Reactor):
    def __init__(self, scale: int = 1) -> None:
        super().__init__("source")
        self.out = self.output("out")
        self.scale = scale

    @reaction(triggers="startup", effects="out")
    def start(self) -> None:
        self.out.set(self.bank_index * self.scale)


class IndexSink(Reactor):
    def __init__(self, width: int) -> None:
        super().__init__("sink")
        self.inp = self.input_multiport("in", width)
        self.received = False

    @reaction(triggers="in")
    def receive(self) -> None:
        for idx, port in enumerate(self.inp):
            if port.is_present:
                self.received = True
                check(port.value == idx, f"ERROR: expected {idx}")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.received, "ERROR: Sink received no data")


class BankToMultiport(Reactor):
    def __init__(self, width: int, scale: int = 1) -> None:
        super().__init__("main")
        source = self.bank("source", width, lambda i: IndexSource(scale))
        sink = self.add(IndexSink(width))
        self.connect([s.out for s in source], sink.inp)


@lf(P + "multiport/BankToMultiport.lf")
def bank_to_multiport() -> Reactor:
    return BankToMultiport(5)


@lf(P + "multiport/MultiportFromBank.lf", timeout=sec(2))
def multiport_from_bank() -> Reactor:
    return BankToMultiport(3, scale=1)


# --- multiport/Broadcast.lf, multiport/BroadcastAfter.lf ---
class Value(Reactor):
    def __init__(self, value: Any = 42, name: str = "a") -> None:
        super().__init__(name)
        self.out = self.output("out")
        self.value = value

    @reaction(triggers="startup", effects="out")
    def start(self) -> None:
        self.out.set(self.value)


class DelayedDestination(Reactor):
    def __init__(self, delay: int = 0) -> None:
        super().__init__("b")
        self.inp = self.input("in")
        self.delay = delay
        self.received = False

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.inp.value == 42, "ERROR: Expected 42.")
        check(self.logical_time == self.delay, f"ERROR: Expected to receive input after {self.delay} ns.")
        self.received = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.received, f"ERROR: Destination {self.bank_index} received no input!")


class Broadcast(Reactor):
    def __init__(self, after: int | None) -> None:
        super().__init__("main")
        a = self.add(Value())
        b = self.bank("b", 4, lambda i: DelayedDestination(after or 0))
        self.connect(a.out, [x.inp for x in b], after=after, repeat=True)  # (a.out)+ -> b.in


@lf(P + "multiport/Broadcast.lf", timeout=sec(2))
def broadcast() -> Reactor:
    return Broadcast(None)


@lf(P + "multiport/BroadcastAfter.lf", timeout=sec(2))
def broadcast_after() -> Reactor:
    return Broadcast(sec(1))


# --- multiport/MultiportIn.lf, multiport/MultiportOut.lf ---
class Computation(Reactor):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.inp, self.out = self.input("in"), self.output("out")

    @reaction(triggers="in", effects="out")
    def compute(self) -> None:
        self.out.set(self.inp.value)


class SumDestination(Reactor):
    def __init__(self, width: int = 4, start: int = 0, step: int = 4, name: str = "b") -> None:
        super().__init__(name)
        self.inp = self.input_multiport("in", width)
        self.s, self.step = start, step
        self.start = start

    @reaction(triggers="in")
    def receive(self) -> None:
        total = sum(p.value for p in self.inp if p.is_present)
        check(total == self.s, f"ERROR: Expected {self.s}, got {total}")
        self.s += self.step

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.s > self.start, "ERROR: Destination received no input!")


class CountingSource(Reactor):
    def __init__(self, width: int = 0, each: bool = False, name: str = "a") -> None:
        super().__init__(name)
        self.t = self.timer("t", 0, msec(200))
        self.out = self.output_multiport("out", width) if width else [self.output("out")]
        self.each = each
        self.s = 0

    @reaction(triggers="t", effects="out")
    def tick(self) -> None:
        for port in self.out:
            port.set(self.s)
            if self.each:
                self.s += 1
        if not self.each:
            self.s += 1


class MultiportIn(Reactor):
    def __init__(self, multiport_out: bool) -> None:
        super().__init__("main")
        a = self.add(CountingSource(4 if multiport_out else 0))
        ts = [self.add(Computation(f"t{i}")) for i in range(1, 5)]
        b = self.add(SumDestination())
        self.connect(a.out, [t.inp for t in ts])  # one to many, or a multiport to four ports
        self.connect([t.out for t in ts], b.inp)


@lf(P + "multiport/MultiportIn.lf", timeout=sec(2))
def multiport_in() -> Reactor:
    return MultiportIn(False)


@lf(P + "multiport/MultiportOut.lf", timeout=sec(2))
def multiport_out() -> Reactor:
    return MultiportIn(True)


# --- multiport/MultiportToBank.lf ---
class IndexDestination(Reactor):
    def __init__(self) -> None:
        super().__init__("b")
        self.inp = self.input("in")
        self.received = False

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.inp.value == self.bank_index, f"ERROR: Expected {self.bank_index}")
        self.received = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.received, f"ERROR: Destination {self.bank_index} received no input!")


class IndexedOutputs(Reactor):
    def __init__(self, width: int) -> None:
        super().__init__("a")
        self.out = self.output_multiport("out", width)

    @reaction(triggers="startup", effects="out")
    def start(self) -> None:
        for idx, port in enumerate(self.out):
            port.set(idx)


class MultiportToBank(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        a = self.add(IndexedOutputs(3))
        b = self.bank("b", 3, lambda i: IndexDestination())
        self.connect(a.out, [x.inp for x in b])


@lf(P + "multiport/MultiportToBank.lf", timeout=sec(2))
def multiport_to_bank() -> Reactor:
    return MultiportToBank()


# --- multiport/MultiportToMultiport.lf, MultiportToHierarchy.lf, BankToBankMultiport(After).lf ---
class HierarchyContainer(Reactor):
    def __init__(self, width: int) -> None:
        super().__init__("b")
        self.inp = self.input_multiport("in", width)
        dst = self.add(SumDestination(width, 6, 16, "dst"))
        self.connect(self.inp, dst.inp)


class MultiportToMultiport(Reactor):
    def __init__(self, hierarchy: bool) -> None:
        super().__init__("main")
        a = self.add(CountingSource(4, each=True))
        b: Any = self.add(HierarchyContainer(4)) if hierarchy else self.add(SumDestination(4, 6, 16))
        self.connect(a.out, b.inp)


@lf(P + "multiport/MultiportToMultiport.lf", timeout=sec(2))
def multiport_to_multiport() -> Reactor:
    return MultiportToMultiport(False)


@lf(P + "multiport/MultiportToHierarchy.lf", timeout=sec(2))
def multiport_to_hierarchy() -> Reactor:
    return MultiportToMultiport(True)


class BankToBankMultiport(Reactor):
    def __init__(self, after: int | None) -> None:
        super().__init__("main")
        a = self.bank("a", 4, lambda i: CountingSource(4, each=True))
        b = self.bank("b", 4, lambda i: SumDestination(4, 6, 16))
        self.connect([p for x in a for p in x.out], [p for x in b for p in x.inp], after=after)


@lf(P + "multiport/BankToBankMultiport.lf", timeout=sec(2))
def bank_to_bank_multiport() -> Reactor:
    return BankToBankMultiport(None)


@lf(P + "multiport/BankToBankMultiportAfter.lf", timeout=sec(2))
def bank_to_bank_multiport_after() -> Reactor:
    return BankToBankMultiport(msec(200))


# --- multiport/NestedBanks.lf: (a.x)+ -> c.z, d.u, e.t ---
class NestedB(Reactor):
    def __init__(self, a_bank_index: int) -> None:
        super().__init__("b")
        self.y = self.output_multiport("y", 2)
        self.a_bank_index = a_bank_index

    @reaction(triggers="startup", effects="y")
    def start(self) -> None:
        base = self.a_bank_index * 4 + self.bank_index * 2
        self.y[0].set(base)
        self.y[1].set(base + 1)


class NestedA(Reactor):
    def __init__(self, bank_index: int) -> None:
        super().__init__("a")
        self.x = self.output_multiport("x", 4)
        b = self.bank("b", 2, lambda i: NestedB(bank_index))
        self.connect([p for m in b for p in m.y], self.x)


class ExpectValue(Reactor):
    def __init__(self, name: str, expected: int) -> None:
        super().__init__(name)
        self.inp = self.input("in")
        self.expected = expected
        self.seen = False

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.inp.value == self.expected, f"ERROR: Expected {self.expected} but received "
                                               f"{self.inp.value}.")
        self.seen = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.seen, f"{self.path} received nothing")


class NestedC(Reactor):
    def __init__(self, bank_index: int) -> None:
        super().__init__("c")
        self.z = self.input_multiport("z", 2)
        f, g = self.add(ExpectValue("f", bank_index * 2)), self.add(ExpectValue("g", bank_index * 2 + 1))
        self.connect(self.z, [f.inp, g.inp])


class NestedD(Reactor):
    def __init__(self) -> None:
        super().__init__("d")
        self.u = self.input_multiport("u", 2)

    @reaction(triggers="u")
    def receive(self) -> None:
        for i, p in enumerate(self.u):
            check(p.value == 6 + i, f"ERROR: Expected {6 + i} but received {p.value}.")


class NestedE(Reactor):
    def __init__(self) -> None:
        super().__init__("e")
        self.t = self.input_multiport("t", 8)

    @reaction(triggers="t")
    def receive(self) -> None:  # LF's E prints what it gets: the eight values, repeated from the start
        check([p.value for p in self.t] == list(range(8)), f"E got {[p.value for p in self.t]}")


class NestedBanks(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        a = self.bank("a", 2, lambda i: NestedA(i))
        c = self.bank("c", 3, lambda i: NestedC(i))
        d, e = self.add(NestedD()), self.add(NestedE())
        self.connect([p for m in a for p in m.x], [p for m in c for p in m.z] + d.u + e.t, repeat=True)


@lf(P + "multiport/NestedBanks.lf")
def nested_banks() -> Reactor:
    return NestedBanks()


# --- multiport/NestedInterleavedBanks.lf ---
class InterA(Reactor):
    def __init__(self, outer_bank_index: int) -> None:
        super().__init__("a")
        self.p = self.output_multiport("p", 2)
        self.outer_bank_index = outer_bank_index

    @reaction(triggers="startup", effects="p")
    def start(self) -> None:
        for i, port in enumerate(self.p):
            port.set(self.outer_bank_index * 4 + self.bank_index * 2 + i + 1)


class InterB(Reactor):
    def __init__(self, bank_index: int) -> None:
        super().__init__("b")
        self.q = self.output_multiport("q", 4)
        a = self.bank("a", 2, lambda i: InterA(bank_index))
        self.connect(interleaved([m.p for m in a]), self.q)


class InterC(Reactor):
    def __init__(self) -> None:
        super().__init__("c")
        self.i = self.input_multiport("i", 8)
        self.seen = False

    @reaction(triggers="i")
    def receive(self) -> None:
        expected = [1, 3, 2, 4, 5, 7, 6, 8]
        for j, port in enumerate(self.i):
            check(port.value == expected[j], f"ERROR: Expected {expected[j]}.")
        self.seen = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.seen, "C received nothing")


class NestedInterleavedBanks(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        b = self.bank("b", 2, lambda i: InterB(i))
        c = self.add(InterC())
        self.connect([p for m in b for p in m.q], c.i)


@lf(P + "multiport/NestedInterleavedBanks.lf")
def nested_interleaved_banks() -> Reactor:
    return NestedInterleavedBanks()


# --- C multiport/FullyConnectedAddressable.lf ---
class Node(Reactor):
    def __init__(self, num_nodes: int) -> None:
        super().__init__("node")
        self.inp = self.input_multiport("in", num_nodes)
        self.out = self.output_multiport("out", num_nodes)
        self.num_nodes = num_nodes
        self.received, self.triggered = 0, False

    @reaction(triggers="startup", effects="out")
    def start(self) -> None:
        self.out[(self.bank_index + 1) % self.num_nodes].set(self.bank_index)

    @reaction(triggers="in")
    def receive(self) -> None:
        self.triggered = True
        present = [p.value for p in self.inp if p.is_present]
        check(len(present) == 1, f"Received {len(present)} messages, but expecting only one!")
        expected = self.num_nodes - 1 if self.bank_index == 0 else self.bank_index - 1
        check(present[0] == expected, f"Received {present[0]}, but expected {expected}!")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.triggered, "Received no input!")


class FullyConnectedAddressable(Reactor):
    def __init__(self, num_nodes: int = 4) -> None:
        super().__init__("main")
        nodes1 = self.bank("nodes1", num_nodes, lambda i: Node(num_nodes))
        self.connect([p for n in nodes1 for p in n.out], interleaved([n.inp for n in nodes1]))
        nodes2 = self.bank("nodes2", num_nodes, lambda i: Node(num_nodes))
        self.connect(interleaved([n.out for n in nodes2]), [p for n in nodes2 for p in n.inp])


@lf(C + "multiport/FullyConnectedAddressable.lf")
def fully_connected_addressable() -> Reactor:
    return FullyConnectedAddressable()


# --- C multiport/InterleavedHierarchy.lf (its B only prints; here it checks what the print shows) ---
class HierA(Reactor):
    def __init__(self) -> None:
        super().__init__("a")
        self.out = self.output_multiport("out", 2)
        self.t = self.timer("t", 0, msec(10))
        self.count = 0

    @reaction(triggers="t", effects="out")
    def tick(self) -> None:
        for port in self.out:
            port.set(self.count)
            self.count += 1


class HierB(Reactor):
    def __init__(self) -> None:
        super().__init__("b")
        self.inp = self.input_multiport("in", 3)
        self.tags = 0

    @reaction(triggers="in")
    def receive(self) -> None:
        # a[k].out[c] lands on b[c].in[k]: b[c] sees channel c of every a, which sent 2*t + c at tick t
        tick = self.logical_time // msec(10)
        expected = [2 * tick + self.bank_index] * 3
        got = [p.value for p in self.inp]
        check(got == expected, f"b[{self.bank_index}] got {got}")
        self.tags += 1


class InterleavedHierarchy(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        a = self.bank("a", 3, lambda i: HierA())
        b = self.bank("b", 2, lambda i: HierB())
        self.connect([p for m in a for p in m.out], interleaved([m.inp for m in b]))


@lf(C + "multiport/InterleavedHierarchy.lf", timeout=msec(20))
def interleaved_hierarchy() -> Reactor:
    return InterleavedHierarchy()


# --- multiport/PipelineAfter.lf: source.out, compute.out -> compute.in, sink.in after 500 msec ---
class Compute(Reactor):
    def __init__(self) -> None:
        super().__init__("compute")
        self.inp, self.out = self.input("in"), self.output("out")

    @reaction(triggers="in", effects="out")
    def compute(self) -> None:
        self.out.set(self.inp.value + 2)


class PipelineSink(Reactor):
    def __init__(self) -> None:
        super().__init__("sink")
        self.inp = self.input("in")

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.inp.value == 42, "ERROR: expected 42!")
        check(self.logical_time == sec(1), "ERROR: Expected to receive input after one second.")


class PipelineAfter(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        source, compute, sink = self.add(Value(40, "source")), self.add(Compute()), self.add(PipelineSink())
        self.connect([source.out, compute.out], [compute.inp, sink.inp], after=msec(500))


@lf(P + "multiport/PipelineAfter.lf")
def pipeline_after() -> Reactor:
    return PipelineAfter()


# --- C multiport/BankMulticast.lf ---
class Foo(Reactor):
    def __init__(self) -> None:
        super().__init__("foo")
        self.inp, self.out = self.input("in"), self.output("out")
        c, d = self.add(Count("c")), self.add(TestCount("d", num_inputs=4))
        self.connect(c.out, self.out)
        self.connect(self.inp, d.inp)


class Bar(Reactor):
    def __init__(self) -> None:
        super().__init__("bar")
        self.out = self.output_multiport("out", 4)
        foo = self.bank("foo", 4, lambda i: Foo())
        self.connect([f.out for f in foo], [f.inp for f in foo])
        self.connect([f.out for f in foo], self.out)


class BankMulticast(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        bar = self.add(Bar())
        d = self.bank("d", 4, lambda i: TestCount(num_inputs=4))
        self.connect(bar.out, [x.inp for x in d])


@lf(C + "multiport/BankMulticast.lf", timeout=sec(3))
def bank_multicast() -> Reactor:
    return BankMulticast()


# --- C RepeatedInheritance.lf: (c.out)+ -> a.a, a.b, a.c, a.d (class inheritance of inputs) ---
class D(Reactor):
    def __init__(self) -> None:
        super().__init__("a")
        self.d = self.input("d")


class CInputs(D):
    def __init__(self) -> None:
        super().__init__()
        self.c = self.input("c")


class BInputs(D):
    def __init__(self) -> None:
        super().__init__()
        self.b = self.input("b")


class A(BInputs, CInputs):
    def __init__(self) -> None:
        super().__init__()
        self.a = self.input("a")
        self.out = self.output("out")

    @reaction(triggers=("a", "b", "c", "d"), effects="out")
    def total(self) -> None:
        self.out.set(self.a.value + self.b.value + self.c.value + self.d.value)


class RepeatedInheritance(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        c, a = self.add(Count("c")), self.add(A())
        t = self.add(TestCount("t", start=4, stride=4, num_inputs=6))
        self.connect(c.out, [a.a, a.b, a.c, a.d], repeat=True)
        self.connect(a.out, t.inp)


@lf(C + "RepeatedInheritance.lf", timeout=sec(5))
def repeated_inheritance() -> Reactor:
    return RepeatedInheritance()


# --- UnconnectedOutput.lf: (in)+ -> b.in ---
class UB(Reactor):
    def __init__(self) -> None:
        super().__init__("b")
        self.inp, self.out_problem = self.input("in"), self.output("out_problem")

    @reaction(triggers="in", effects="out_problem")
    def receive(self) -> None:
        self.out_problem.set(self.bank_index)


class UA(Reactor):
    def __init__(self) -> None:
        super().__init__("m")
        self.inp = self.input("in")
        self.outs = [self.output(f"out{i}") for i in (1, 2, 3)]
        b = self.bank("b", 3, lambda i: UB())
        self.connect(self.inp, [x.inp for x in b], repeat=True)
        self.connect([x.out_problem for x in b], self.outs)


class UnconnectedOutput(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.m = self.add(UA())
        self.t = self.timer("t", 0, msec(10))

    @reaction(triggers="t", effects="m.in")
    def tick(self) -> None:
        self.m.inp.set(42)

    @reaction(triggers="m.out3")
    def receive(self) -> None:
        check(self.m.outs[2].value == 2, "Expected 2.")


@lf(P + "UnconnectedOutput.lf", timeout=msec(10))
def unconnected_output() -> Reactor:
    return UnconnectedOutput()


# --- UnconnectedInput.lf: Add's in1 is never connected, and simply absent ---
class AddTwo(Reactor):
    def __init__(self) -> None:
        super().__init__("add")
        self.in1, self.in2, self.out = self.input("in1"), self.input("in2"), self.output("out")

    @reaction(triggers=("in1", "in2"), effects="out")
    def add(self) -> None:
        self.out.set(sum(p.value for p in (self.in1, self.in2) if p.is_present))


class UnconnectedInput(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        source, add = self.add(Count("source")), self.add(AddTwo())
        printer = self.add(TestCount("print", num_inputs=6))
        self.connect(source.out, add.in2)
        self.connect(add.out, printer.inp)


@lf(P + "UnconnectedInput.lf", timeout=sec(5))
def unconnected_input() -> Reactor:
    return UnconnectedInput()


# --- Mutable.lf, multiport/MultiportMutableInput.lf ---
class Zeros(Reactor):
    def __init__(self, width: int) -> None:
        super().__init__("s")
        self.out = self.output_multiport("out", width)

    @reaction(triggers="startup", effects="out")
    def start(self) -> None:
        for port in self.out:
            port.set(0)


class MutableR(Reactor):
    def __init__(self, width: int) -> None:
        super().__init__("r")
        self.inp = self.input_multiport("in", 2, mutable=True)
        self.out = self.output_multiport("out", width)

    @reaction(triggers="in", effects="out")
    def change(self) -> None:
        for i, port in enumerate(self.out):
            self.inp[i].value = (i + 1) * 2
            port.set(self.inp[i].value)


class Mutable(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.s, self.r = self.add(Zeros(2)), self.add(MutableR(2))
        self.connect(self.s.out, self.r.inp)

    @reaction(triggers="r.out")
    def from_r(self) -> None:
        check([p.value for p in self.r.out] == [2, 4], "ERROR: Expected 2 and 4.")

    @reaction(triggers="s.out")
    def from_s(self) -> None:
        check([p.value for p in self.s.out] == [0, 0], "ERROR: Expected zeros.")


@lf(P + "Mutable.lf")
def mutable() -> Reactor:
    return Mutable()


class MutableSource(Reactor):
    def __init__(self) -> None:
        super().__init__("s")
        self.out = self.output_multiport("out", 2)

    @reaction(triggers="startup", effects="out")
    def start(self) -> None:
        self.out[0].set([21])  # a list, so that a change in place would show (LF's Python ints are values)
        self.out[1].set([42])


class Scale(Reactor):
    def __init__(self, scale: int = 2) -> None:
        super().__init__("c")
        self.inp = self.input_multiport("in", 2, mutable=True)
        self.out = self.output_multiport("out", 2)
        self.scale = scale

    @reaction(triggers="in", effects="out")
    def scale_(self) -> None:
        for idx, port in enumerate(self.inp):
            port.value[0] *= self.scale  # modify the input in place: allowed, it is this reaction's copy
            self.out[idx].set(port.value)


class MutablePrint(Reactor):
    def __init__(self, name: str, expected: int) -> None:
        super().__init__(name)
        self.inp = self.input_multiport("in", 2)
        self.expected = expected
        self.seen = False

    @reaction(triggers="in")
    def receive(self) -> None:
        expected = self.expected
        for idx, port in enumerate(self.inp):
            check(port.value == [expected], f"ERROR: Expected {expected} on channel {idx}, got {port.value}!")
            expected *= 2
        self.seen = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.seen, f"{self.path} received nothing")


class MultiportMutableInput(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        s, c = self.add(MutableSource()), self.add(Scale())
        p, original = self.add(MutablePrint("p", 42)), self.add(MutablePrint("original", 21))
        self.connect(s.out, c.inp)
        self.connect(c.out, p.inp)
        self.connect(s.out, original.inp)  # not in LF's file: the source's values are left unchanged


@lf(P + "multiport/MultiportMutableInput.lf")
def multiport_mutable_input() -> Reactor:
    return MultiportMutableInput()


# --- C LastTimeDefer.lf, LastTimeDrop.lf, LastTimeReplace.lf, LastTimeUpdate.lf ---
class LastTime(Reactor):
    def __init__(self, policy: str, offset: int) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, msec(100))
        self.a = self.logical_action("a", offset, min_spacing=msec(300), policy=policy)
        self.policy = policy
        self.c = self.c2 = 0
        self.last: int | None = None
        self.received = 0

    @reaction(triggers="t", effects="a")
    def tick(self) -> None:
        if self.policy != "update" or self.c < 3:
            self.a.schedule(self.c, 0)
            self.c += 1

    @reaction(triggers="a")
    def fired(self) -> None:
        self.received += 1
        if self.policy == "update":
            check(self.logical_time == msec(301), "Expected elapsed logical time of 301ms was violated.")
        check(self.last is None or self.logical_time >= self.last + msec(300),
              "Minimum spacing of 300ms was violated.")
        expected = self.c2 if self.policy == "defer" else self.c - 1
        check(self.a.value == expected, f"Expected value {expected}, got {self.a.value}")
        self.c2 += 1
        self.last = self.logical_time

    @reaction(triggers="shutdown")
    def done(self) -> None:  # not in LF's files: the policies differ in how many events get through
        count = {"defer": 4, "drop": 4, "replace": 4, "update": 1}[self.policy]
        check(self.received == count, f"{self.policy}: {self.received} events, expected {count}")


@lf(C + "LastTimeDefer.lf", timeout=sec(1))
def last_time_defer() -> Reactor:
    return LastTime("defer", msec(1))


@lf(C + "LastTimeDrop.lf", timeout=sec(1))
def last_time_drop() -> Reactor:
    return LastTime("drop", msec(1))


@lf(C + "LastTimeReplace.lf", timeout=sec(1))
def last_time_replace() -> Reactor:
    return LastTime("replace", msec(1))


@lf(C + "LastTimeUpdate.lf", timeout=msec(600))
def last_time_update() -> Reactor:
    return LastTime("update", msec(101))


# --- C DelayedActionDuplicate.lf: min spacing 0 with the defer, drop and replace policies ---
class DelayedActionDuplicate(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, sec(1))
        self.a = self.logical_action("a")
        self.b = self.logical_action("b", 0, min_spacing=0, policy="drop")
        self.c = self.logical_action("c", 0, min_spacing=0, policy="replace")
        self.count = {"a": 0, "b": 0, "c": 0}
        self.expect = {"a": 0, "b": 0, "c": 1}

    @reaction(triggers="t", effects=("a", "b", "c"))
    def tick(self) -> None:
        for name in ("a", "b", "c"):
            for _ in range(2):
                getattr(self, name).schedule(self.count[name], msec(100))
                self.count[name] += 1

    def _got(self, name: str, step: int) -> None:
        value = getattr(self, name).value
        check(value == self.expect[name], f"{name}: Expected {self.expect[name]} but got {value}")
        self.expect[name] += step

    @reaction(triggers="a")
    def defer(self) -> None:
        self._got("a", 1)

    @reaction(triggers="b")
    def drop(self) -> None:
        self._got("b", 2)

    @reaction(triggers="c")
    def replace(self) -> None:
        self._got("c", 2)


@lf(C + "DelayedActionDuplicate.lf", timeout=sec(5))
def delayed_action_duplicate() -> Reactor:
    return DelayedActionDuplicate()


# --- C concurrent/AsyncCallbackDrop.lf, AsyncCallbackReplace.lf, AsyncCallbackUpdate.lf and Python
# concurrent/AsyncCallback.lf (times / 10: timer 20 ms, sleep 10 ms, min delay and spacing 10 ms, 200 ms) ---
class AsyncCallback(Reactor):
    def __init__(self, policy: str | None) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, msec(20))
        spacing = None if policy is None else msec(10)
        self.a = self.physical_action("a", msec(10), min_spacing=spacing, policy=policy or "defer")
        self.policy = policy
        self.threads: list[threading.Thread] = []
        self.expected_time = msec(10)
        self.toggle = False
        self.i = 0

    def take_time(self) -> None:  # runs on a thread of its own, outside logical time
        time.sleep(0.01)
        self.a.schedule(0)
        self.a.schedule(1)

    @reaction(triggers="t", effects="a")
    def tick(self) -> None:
        thread = threading.Thread(target=self.take_time)
        self.threads.append(thread)
        thread.start()

    @reaction(triggers="a")
    def called_back(self) -> None:
        self.i += 1
        check(self.logical_time > self.expected_time,
              f"ERROR: Expected logical time to be larger than {self.expected_time}.")
        if self.policy is None:  # both events arrive, at successive microsteps
            self.toggle = not self.toggle
            if not self.toggle:
                self.expected_time += msec(20)
            return
        check(self.a.value == (0 if self.policy == "drop" else 1),
              f"ERROR: Received: {self.a.value}, expected {0 if self.policy == 'drop' else 1}")
        self.expected_time += msec(20)

    @reaction(triggers="shutdown")
    def done(self) -> None:
        for thread in self.threads:
            thread.join()
        check(self.i > 0, "no callback arrived")


@lf(P + "concurrent/AsyncCallback.lf", timeout=msec(200), fast=False, physical=True, local=("main",))
def async_callback() -> Reactor:
    return AsyncCallback(None)


@lf(C + "concurrent/AsyncCallbackDrop.lf", timeout=msec(200), fast=False, physical=True, local=("main",))
def async_callback_drop() -> Reactor:
    return AsyncCallback("drop")


@lf(C + "concurrent/AsyncCallbackReplace.lf", timeout=msec(200), fast=False, physical=True, local=("main",))
def async_callback_replace() -> Reactor:
    return AsyncCallback("replace")


@lf(C + "concurrent/AsyncCallbackUpdate.lf", timeout=msec(200), fast=False, physical=True, local=("main",))
def async_callback_update() -> Reactor:
    return AsyncCallback("update")


# --- PhysicalConnection.lf: source.out ~> destination.in ---
class PhysicalDestination(Reactor):
    def __init__(self) -> None:
        super().__init__("destination")
        self.inp = self.input("in")
        self.seen = False

    @reaction(triggers="in")
    def receive(self) -> None:
        check(self.logical_time > 0, "ERROR: Logical time should have been greater than zero.")
        self.seen = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.seen, "nothing arrived over the physical connection")


class PhysicalConnection(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        source, destination = self.add(Value(42, "source")), self.add(PhysicalDestination())
        self.connect(source.out, destination.inp, physical=True)


@lf(P + "PhysicalConnection.lf", physical=True)
def physical_connection() -> Reactor:
    return PhysicalConnection()


# --- SlowingClockPhysical.lf (times / 10: min delay and spacing 10 ms, timeout 150 ms) ---
class SlowingClockPhysical(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.a = self.physical_action("a", msec(10), min_spacing=msec(10))
        self.interval = self.expected_time = msec(10)

    @reaction(triggers="startup", effects="a")
    def start(self) -> None:
        self.expected_time = msec(10)
        self.a.schedule(delay=0)

    @reaction(triggers="a", effects="a")
    def slower(self) -> None:
        check(self.logical_time >= self.expected_time,
              f"ERROR: Expected logical time to be at least: {self.expected_time} nsec.")
        self.interval += msec(10)
        self.expected_time = msec(10) + self.interval
        self.a.schedule(delay=self.interval)

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.expected_time >= msec(50),
              f"ERROR: Expected the next expected time to be at least: 50 ms. It was: {self.expected_time}.")


@lf(P + "SlowingClockPhysical.lf", timeout=msec(150), fast=False, physical=True)
def slowing_clock_physical() -> Reactor:
    return SlowingClockPhysical()


# --- ManualDelayedReaction.lf: a physical action scheduled from a reaction, and a deadline ---
class PhysicalDelay(Reactor):
    def __init__(self) -> None:
        super().__init__("g")
        self.y_in, self.y_out = self.input("y_in"), self.output("y_out")
        self.act = self.physical_action("act")
        self.y_state = 0

    @reaction(triggers="y_in", effects="act")
    def take(self) -> None:
        self.y_state = self.y_in.value
        self.act.schedule(delay=msec(100))

    @reaction(triggers="act", effects="y_out")
    def emit(self) -> None:
        self.y_out.set(self.y_state)


class ManualSink(Reactor):
    def __init__(self) -> None:
        super().__init__("sink")
        self.s_in = self.input("s_in")
        self.seen = False

    @reaction(triggers="s_in", deadline=msec(200), on_deadline="late")
    def receive(self) -> None:
        check(self.logical_time >= msec(100), f"Expected {msec(100)} but got {self.logical_time}.")
        self.seen = True

    def late(self) -> None:
        self.seen = True

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.seen, "nothing arrived")


class ManualDelayedReaction(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        source, sink, g = self.add(Value(1, "source")), self.add(ManualSink()), self.add(PhysicalDelay())
        self.connect(source.out, g.y_in)
        self.connect(g.y_out, sink.s_in)


@lf(P + "ManualDelayedReaction.lf", keepalive=False, fast=False, physical=True)
def manual_delayed_reaction() -> Reactor:
    return ManualDelayedReaction()


# --- GetTime.lf (times / 100: timer every 10 ms, timeout 20 ms; real time) ---
class GetTime(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, msec(10))
        self.ticks = 0

    @reaction(triggers="t")
    def show(self) -> None:  # LF's file prints these; here the relations between them are checked
        logical, elapsed = clock.logical(), clock.logical_elapsed()
        physical, elapsed_physical = clock.physical(), clock.physical_elapsed()
        check(logical == clock.start() + elapsed and elapsed == self.logical_time, "logical time")
        check(physical - logical >= 0 and elapsed_physical >= elapsed, "physical time lags logical time")
        check(abs((physical - clock.start()) - elapsed_physical) < msec(1), "physical elapsed")
        self.ticks += 1

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.ticks == 3, f"{self.ticks} ticks")


@lf(P + "GetTime.lf", timeout=msec(20), fast=False, physical=True)
def get_time() -> Reactor:
    return GetTime()


# --- C concurrent/failing/Watchdog.lf (times / 100: timer 10 ms, watchdog 15 ms, sleep 16 ms, 110 ms) ---
class Watcher(Reactor):
    def __init__(self, timeout: int = msec(15)) -> None:
        super().__init__("w")
        self.t = self.timer("t", msec(10), msec(10))
        self.d = self.output("d")
        self.count = 0
        self.timeout = timeout
        self.poodle = self.watchdog("poodle", timeout, handler="expired")

    def expired(self) -> None:
        self.count += 1

    @reaction(triggers="t", effects=("poodle", "d"))
    def tick(self) -> None:
        self.poodle.start()
        self.d.set(42)

    @reaction(triggers="poodle", effects="d")
    def poodle_(self) -> None:
        self.d.set(1)

    @reaction(triggers="shutdown", effects="poodle")
    def done(self) -> None:
        self.poodle.stop()
        check(self.count >= 2, f"Watchdog expired {self.count} times. Expected at least 2.")


class WatchdogMain(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.add(Watcher())
        self.count = 0

    @reaction(triggers="w.d")
    def produced(self) -> None:
        self.count += 1
        if self.count % 4 == 0:
            time.sleep(0.016)  # taking a long time to process that output

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.count >= 12, f"Watchdog produced output {self.count} times. Expected at least 12.")


@lf(C + "concurrent/failing/Watchdog.lf", timeout=msec(110), fast=False, physical=True)
def watchdog() -> Reactor:
    return WatchdogMain()


# --- C concurrent/failing/WatchdogMultiple.lf (timer 20 ms instead of 2 s) ---
class WithWatchdog(Reactor):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.watch = self.watchdog("watch", msec(10))
        self.cnt = 0

    @reaction(triggers="startup", effects="watch")
    def start(self) -> None:
        self.watch.start()

    @reaction(triggers="watch")
    def expired(self) -> None:
        self.cnt += 1
        check(self.logical_time == msec(10), f"Watchdog handler triggered at wrong tag {self.tag}.")

    @reaction(triggers="shutdown")
    def done(self) -> None:
        check(self.cnt == 1, "Watchdog did not timeout")


class WatchdogMultiple(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.add(WithWatchdog("w1"))
        self.add(WithWatchdog("w2"))
        self.t = self.timer("t", msec(20))

    @reaction(triggers="t")
    def tick(self) -> None:
        pass


@lf(C + "concurrent/failing/WatchdogMultiple.lf", fast=False, physical=True)
def watchdog_multiple() -> Reactor:
    return WatchdogMultiple()


# --- C concurrent/ModesWithWatchdog.lf (times / 10: timer and watchdog 10 ms, timeout 100 ms) ---
class Arbitrator(Reactor):
    def __init__(self, timeout: int = msec(10)) -> None:
        super().__init__("ar")
        self.in1, self.in2 = self.input("in1"), self.input("in2")
        self.watcher = self.watchdog("watcher", timeout, handler="timed_out")
        self.primary, self.backup = self.mode("Primary", initial=True), self.mode("Backup")
        self.switched = False

    def timed_out(self) -> None:
        pass

    @reaction(triggers="in1", effects="watcher", mode="Primary")
    def primary_in(self) -> None:
        self.watcher.start()

    @reaction(triggers="watcher", effects="reset(Backup)", mode="Primary")
    def fired(self) -> None:
        self.switched = True
        self.backup.set()

    @reaction(triggers="in2", effects="watcher", mode="Backup")
    def backup_in(self) -> None:
        self.watcher.start()

    @reaction(triggers="shutdown")
    def done(self) -> None:  # success in LF's file is running to completion; the switch must have happened
        check(self.switched, "the watchdog never fired in mode Primary")


class ModesWithWatchdog(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        self.t = self.timer("t", 0, msec(10))
        self.ar = self.add(Arbitrator())

    @reaction(triggers="t", effects=("ar.in1", "ar.in2"))
    def tick(self) -> None:
        self.ar.in1.set(0.0)
        self.ar.in2.set(0.0)


@lf(C + "concurrent/ModesWithWatchdog.lf", timeout=msec(100), keepalive=True, fast=False, physical=True)
def modes_with_watchdog() -> Reactor:
    return ModesWithWatchdog()

