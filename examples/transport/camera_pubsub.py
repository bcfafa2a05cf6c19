"""A ROS-style camera pipeline in three processes: one publisher, two subscribers, frames in shared memory.

The camera publishes 4 MB frames on topic ``camera``; a "detector" and a "logger" process subscribe. Each
frame is copied once into the camera's shared-memory store and both subscribers get numpy views on it (no
copy); small dicts (the detector's results) travel inline. Run it:

    .venv/bin/python examples/transport/camera_pubsub.py
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np

from reflow.transport import publisher, subscribe

FRAMES = 20


def detector(bus: str) -> None:
    """Subscribes to frames, publishes one small result dict per frame."""
    with publisher("detections", bus) as out:
        out.wait_for_subscribers(1)
        done = mp.Event()
        count = [0]

        def on_frame(frame: np.ndarray) -> None:  # frame is a view on the camera's store
            out.publish({"frame": int(frame[0, 0, 0]), "bright": float(frame.mean())})
            count[0] += 1
            if count[0] == FRAMES:
                done.set()

        with subscribe("camera", on_frame, bus):
            done.wait(60)


def main() -> None:
    ctx = mp.get_context("spawn")
    bus = f"camera-demo-{os.getpid()}"  # a private namespace: two demos at once do not collide
    worker = ctx.Process(target=detector, args=(bus,))
    worker.start()
    got: list[dict[str, float]] = []
    rng = np.random.default_rng(0)  # explicit seed: the same frames every run
    try:
        with publisher("camera", bus) as cam, subscribe("detections", got.append, bus):
            cam.wait_for_subscribers(1)
            for i in range(FRAMES):
                frame = rng.integers(0, 255, (1024, 1024, 4), dtype=np.uint8)
                frame[0, 0, 0] = i
                cam.publish(frame)
            worker.join(60)
            deadline = time.monotonic() + 10
            while len(got) < FRAMES and time.monotonic() < deadline:  # let the last detections arrive
                time.sleep(0.01)
    finally:
        if worker.is_alive():
            worker.terminate()
            worker.join()
    print(f"{len(got)} detections; first {got[0]}, last {got[-1]}")
    print(f"camera: {cam.stats.stored} frames through shared memory, {cam.stats.inline} inline")


if __name__ == "__main__":
    main()
