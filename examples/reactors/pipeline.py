"""A pipeline with parallel stages doing numpy work: source -> bank of workers -> sink.

Every 10 ms of logical time the source makes a batch of random matrices (explicit seed). A bank of
``WIDTH`` workers each takes one matrix, runs a few matrix products and a solve (numpy releases the GIL, so
the workers of one tag run in parallel with ``--workers``), and the sink gathers the results through a
multiport and folds them into a checksum. The checksum is the same for any number of workers: that is the
determinism guarantee.

    reflow run examples/reactors/pipeline.py --workers 4
    reflow graph examples/reactors/pipeline.py --out pipeline.svg
"""

from __future__ import annotations

import numpy as np

from reflow.reactor import Reactor, msec, reaction, run

WIDTH = 4
SIZE = 192
FRAMES = 30


class Source(Reactor):
    """Emits one batch of ``width`` matrices per tick, ``frames`` times, then asks to stop."""

    def __init__(self, width: int, frames: int, seed: int = 0) -> None:
        super().__init__("source")
        self.tick = self.timer("tick", offset=0, period=msec(10))
        self.out = self.output_multiport("out", width, np.ndarray)
        self.rng = np.random.default_rng(seed)
        self.frames = frames
        self.sent = 0

    @reaction(triggers="tick", effects="out")
    def emit(self) -> None:
        for port in self.out:
            port.set(self.rng.standard_normal((SIZE, SIZE)))
        self.sent += 1
        if self.sent == self.frames:
            self.request_stop()


class Worker(Reactor):
    """A numpy-heavy stage: FFTs, a sort and element-wise maths (all release the GIL, none starts its own
    thread pool: BLAS calls would, and BLAS threads on top of reflow's threads oversubscribe the cores)."""

    def __init__(self) -> None:
        super().__init__("worker")
        self.inp = self.input("in", np.ndarray)
        self.out = self.output("out", float)

    @reaction(triggers="in", effects="out")
    def work(self) -> None:
        a = self.inp.get()
        for _ in range(3):
            spectrum = np.fft.rfft2(a)
            a = np.fft.irfft2(np.sqrt(np.abs(spectrum)) * np.exp(1j * np.angle(spectrum)), s=a.shape)
        a = np.sort(a, axis=None)
        self.out.set(float(np.tanh(a).sum()))


class Sink(Reactor):
    """Folds every result into a checksum, in bank order, and reports at shutdown."""

    def __init__(self, width: int) -> None:
        super().__init__("sink")
        self.inp = self.input_multiport("in", width, float)
        self.checksum = 0.0
        self.count = 0

    @reaction(triggers="in")
    def fold(self) -> None:
        for port in self.inp:
            if port.is_present:
                self.checksum = (self.checksum * 31 + port.get()) % 1e9
                self.count += 1

    @reaction(triggers="shutdown")
    def report(self) -> None:
        print(f"pipeline: {self.count} matrices through a bank of {len(self.inp)} worker reactors, "
              f"logical time {self.logical_time / 1e6:.0f} ms, checksum {self.checksum:.6f}")


class Pipeline(Reactor):
    def __init__(self, width: int = WIDTH, frames: int = FRAMES) -> None:
        super().__init__("main")
        source = self.add(Source(width, frames))
        workers = self.bank("workers", width, lambda i: Worker())
        self.sink = self.add(Sink(width))
        self.connect(source.out, [w.inp for w in workers])
        self.connect([w.out for w in workers], self.sink.inp)


def main() -> Reactor:
    return Pipeline()


if __name__ == "__main__":
    run(main(), workers=WIDTH)
