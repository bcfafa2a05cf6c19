"""A physical action fed by a thread: a simulated sensor reporting readings at physical times.

The sensor thread starts at startup and calls ``schedule`` on a physical action from outside the scheduler;
each reading is tagged with the physical time at which it arrived. A filter smooths the readings; after
``READINGS`` readings the thread asks the program to stop. Run it in real time to see the timestamps follow
the wall clock:

    reflow run examples/reactors/sensor.py --realtime
"""

from __future__ import annotations

import threading
import time

from reflow.reactor import Reactor, reaction, run

READINGS = 8


class Sensor(Reactor):
    """Owns a thread that produces readings every few milliseconds (a stand-in for a device or HTTP)."""

    def __init__(self, readings: int = READINGS, interval_s: float = 0.005) -> None:
        super().__init__("sensor")
        self.reading = self.physical_action("reading")
        self.out = self.output("out", float)
        self.readings = readings
        self.interval_s = interval_s
        self.thread: threading.Thread | None = None

    def _produce(self) -> None:
        for i in range(self.readings):
            time.sleep(self.interval_s)
            self.reading.schedule(float(i % 3))
        self.request_stop()

    @reaction(triggers="startup")
    def start(self) -> None:
        self.thread = threading.Thread(target=self._produce, name="sensor", daemon=True)
        self.thread.start()

    @reaction(triggers="reading", effects="out")
    def forward(self) -> None:
        self.out.set(self.reading.value)

    @reaction(triggers="shutdown")
    def stop(self) -> None:
        if self.thread is not None:
            self.thread.join()


class Smoother(Reactor):
    """Exponential moving average of the readings."""

    def __init__(self) -> None:
        super().__init__("smoother")
        self.inp = self.input("in", float)
        self.mean = 0.0
        self.seen = 0

    @reaction(triggers="in")
    def update(self) -> None:
        self.mean = 0.5 * self.mean + 0.5 * self.inp.get()
        self.seen += 1
        print(f"  reading {self.seen} at logical {self.logical_time / 1e6:7.2f} ms: "
              f"{self.inp.get():.0f}, smoothed {self.mean:.3f}")


class Main(Reactor):
    def __init__(self) -> None:
        super().__init__("main")
        sensor = self.add(Sensor())
        self.smoother = self.add(Smoother())
        self.connect(sensor.out, self.smoother.inp)


def main() -> Reactor:
    return Main()


if __name__ == "__main__":
    run(main(), fast=False)
