"""Reactor programs for the process executor tests (a module of its own, so ``spawn`` workers import it)."""

from __future__ import annotations

import ctypes
import os
import signal

import numpy as np

from reflow.reactor import Reactor, reaction


class Gen(Reactor):
    """Emits a 400 KB array (through the shared-memory store) and a small int, every tag."""

    def __init__(self) -> None:
        super().__init__("gen")
        self.t = self.timer("t", 0, 1)
        self.out = self.output("out")
        self.n = 0

    @reaction(triggers="t", effects="out")
    def emit(self) -> None:
        self.n += 1
        self.out.set(np.arange(50_000, dtype=np.float64) * self.n)


class Stage(Reactor):
    """Keeps a running total of what it is sent (state that must stay in one process)."""

    def __init__(self, k: int) -> None:
        super().__init__("stage")
        self.k = k
        self.inp = self.input("in")
        self.out = self.output("out", float)
        self.total = 0.0

    @reaction(triggers="in", effects="out")
    def acc(self) -> None:
        self.total += float(self.inp.get()[:: self.k + 1].sum())
        self.out.set(self.total)


class Crasher(Reactor):
    """Kills its own process with SIGKILL at the third tag: a worker crash, as from native code or OOM."""

    def __init__(self) -> None:
        super().__init__("crasher")
        self.inp = self.input("in")
        self.seen = 0

    @reaction(triggers="in")
    def maybe_die(self) -> None:
        self.seen += 1
        if self.seen == 3:
            os.kill(os.getpid(), signal.SIGKILL)


class Fan(Reactor):
    """gen -> bank of stages -> sink, optionally with a crasher on the gen output."""

    def __init__(self, width: int = 3, crash: bool = False) -> None:
        super().__init__("main")
        self.gen = self.add(Gen())
        self.stages = self.bank("stages", width, lambda i: Stage(i))
        for s in self.stages:
            self.connect(self.gen.out, s.inp)
        if crash:
            self.crasher = self.add(Crasher())
            self.connect(self.gen.out, self.crasher.inp)
        self.totals: list[float] = []

    @reaction(triggers="stages.out")
    def sink(self) -> None:
        self.totals = [s.out.get() for s in self.stages]


class ThreadCount(Reactor):
    """Reports, once, the thread caps its process runs under: the environment and torch's own count."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.out = self.output("out")

    @reaction(triggers="startup", effects="out")
    def report(self) -> None:
        import torch

        self.out.set((os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()))


class ThreadProbe(Reactor):
    """Two ``ThreadCount`` reactors, so a two-worker executor has something to place on each worker."""

    def __init__(self) -> None:
        super().__init__("main")
        self.a = self.add(ThreadCount("a"))
        self.b = self.add(ThreadCount("b"))


class Forever(Reactor):
    """Runs until interrupted: a stage in a worker process, fed a small array every tag."""

    def __init__(self) -> None:
        super().__init__("main")
        self.gen = self.add(Gen())
        self.stage = self.add(Stage(0))
        self.connect(self.gen.out, self.stage.inp)


def run_until_interrupted() -> None:
    """Body of the Ctrl-C test's child: print the worker pids once running, then run until SIGINT."""
    import sys
    import time

    from reflow.reactor import run
    from reflow.runtime.process_executor import ProcessExecutor

    ex = ProcessExecutor(2, local=["main.gen"])
    main = Forever()

    def announce(tag: object) -> None:
        if getattr(announce, "done", False):
            time.sleep(0.01)
            return
        announce.done = True  # type: ignore[attr-defined]
        print(" ".join(str(pid) for pid in ex.pids), flush=True)

    try:
        run(main, executor=ex, on_tag=announce)
    except KeyboardInterrupt:
        sys.exit(130)


class Pointer(Reactor):
    """Writes a ctypes pointer (which does not pickle) at its second tag, next to an array."""

    def __init__(self) -> None:
        super().__init__("pointer")
        self.t = self.timer("t", 0, 1)
        self.out = self.output("out")
        self.arr = self.output("arr")
        self.n = 0

    @reaction(triggers="t", effects=("out", "arr"))
    def emit(self) -> None:
        self.n += 1
        self.arr.set(np.ones(50_000))
        self.out.set(ctypes.pointer(ctypes.c_int(self.n)) if self.n == 2 else self.n)


class Count(Reactor):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.inp = self.input("in")
        self.seen = 0

    @reaction(triggers="in")
    def count(self) -> None:
        self.seen += 1

    @reaction(triggers="shutdown")
    def bye(self) -> None:
        print(f"{self.path} saw {self.seen}", flush=True)


class Unsendable(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        src = self.add(Pointer())
        for name, port in (("ints", src.out), ("arrays", src.arr)):
            self.connect(port, self.add(Count(name)).inp)
