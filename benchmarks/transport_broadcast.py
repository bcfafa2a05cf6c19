"""Claim: broadcasting a large message costs nearly the same for 1 or 8 subscribers (one copy, handles after).

One publisher sends 1 MB, 16 MB and 64 MB numpy arrays to 1, 2, 4 and 8 subscriber processes; the latency is
the time until the *last* subscriber holds the data (each acknowledges on its own ``multiprocessing.Pipe``,
the same small cost for every transport). Peers in the same run: one ``multiprocessing.Pipe`` per
subscriber (the standard library's way: pickle and write to each) and a pyzmq PUB socket over ``ipc://``
(zero-copy frames, one send for all subscribers). Transports are interleaved in every repeat; medians.

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/transport_broadcast.py [--quick]

Writes results/transport_broadcast.json and results/transport_broadcast.png.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from reflow.transport import Publisher, Subscriber

CTX = mp.get_context("spawn")
SIZES = [1 << 20, 16 << 20, 64 << 20]
FANOUT = [1, 2, 4, 8]


def reflow_sub(topic: str, ack: Any) -> None:
    with Subscriber(topic) as sub:
        sub.wait_connected()
        ack.send_bytes(b"r")
        while True:
            v = sub.recv()
            if isinstance(v, str):
                return
            ack.send_bytes(b"k")
            del v


def pipe_sub(conn: Any, ack: Any) -> None:
    ack.send_bytes(b"r")
    while True:
        v = conn.recv()
        if isinstance(v, str):
            return
        ack.send_bytes(b"k")


def zmq_sub(addr: str, ack: Any) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(addr)
    ack.send_bytes(b"r")
    while True:
        frames = s.recv_multipart(copy=False)
        if frames[0].bytes == b"stop":
            break
        pickle.loads(frames[0].buffer, buffers=[f.buffer for f in frames[1:]])
        ack.send_bytes(b"k")
    s.close(linger=0)
    ctx.term()


class Fanout:
    """One transport with ``n`` subscriber processes; ``send`` returns seconds until all acknowledged."""

    def __init__(self, kind: str, n: int) -> None:
        self.kind, self.acks, self.procs = kind, [], []
        tag = f"bcast-{os.getpid()}-{kind}-{n}"
        self.conns: list[Any] = []
        if kind == "reflow":
            self.pub = Publisher(tag, store_bytes=256 << 20, timeout=60)
        elif kind == "zmq":
            import zmq

            self.ctx = zmq.Context()
            self.sock = self.ctx.socket(zmq.PUB)
            self.addr = f"ipc:///tmp/reflow-bench-{tag}"
            self.sock.bind(self.addr)
        for _ in range(n):
            mine, theirs = CTX.Pipe()
            self.acks.append(mine)
            if kind == "reflow":
                args: tuple[Any, ...] = (reflow_sub, (tag, theirs))
            elif kind == "pipe":
                c_mine, c_theirs = CTX.Pipe()
                self.conns.append(c_mine)
                args = (pipe_sub, (c_theirs, theirs))
            else:
                args = (zmq_sub, (self.addr, theirs))
            p = CTX.Process(target=args[0], args=args[1], daemon=True)
            p.start()
            self.procs.append(p)
        for a in self.acks:
            a.recv_bytes()
        if kind == "reflow":
            self.pub.wait_for_subscribers(n)
        elif kind == "zmq":
            time.sleep(0.5)  # PUB/SUB joins asynchronously ("slow joiner")

    def _publish(self, value: Any) -> None:
        if self.kind == "reflow":
            self.pub.publish(value)
        elif self.kind == "pipe":
            for c in self.conns:
                c.send(value)
        else:
            bufs: list[pickle.PickleBuffer] = []
            head = pickle.dumps(value, protocol=5, buffer_callback=bufs.append)
            self.sock.send_multipart([head, *[b.raw() for b in bufs]], copy=False)

    def send(self, value: Any) -> float:
        t0 = time.perf_counter()
        self._publish(value)
        for a in self.acks:
            a.recv_bytes()
        return time.perf_counter() - t0

    def close(self) -> None:
        if self.kind == "zmq":
            self.sock.send(b"stop")
        else:
            self._publish("stop")
        for p in self.procs:
            p.join(10)
        if self.kind == "reflow":
            self.pub.close()
        elif self.kind == "zmq":
            self.sock.close(linger=0)
            self.ctx.term()
            os.unlink(self.addr[6:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sizes up to 16 MB, fewer repeats")
    ap.add_argument("--out", default="results/transport_broadcast.json")
    args = ap.parse_args()
    sizes = SIZES[:2] if args.quick else SIZES
    reps = 3 if args.quick else 7
    rows = []
    for n in FANOUT:
        fans = [Fanout(k, n) for k in ("reflow", "pipe", "zmq")]
        try:
            for size in sizes:
                msg = np.ones(size, np.uint8)
                t: dict[str, list[float]] = {f.kind: [] for f in fans}
                for _ in tqdm(range(reps), desc=f"{n} subscribers, {size >> 20} MB", leave=False):
                    for f in fans:
                        f.send(msg)  # warm-up
                        t[f.kind].append(f.send(msg))
                for k, v in t.items():
                    rows.append({"subscribers": n, "size": size, "peer": k, "p50_s": statistics.median(v)})
        finally:
            for f in fans:
                f.close()
    print(f"\n{'size':>6} {'subs':>5} {'reflow ms':>10} {'pipe ms':>9} {'zmq ms':>8} {'pipe/reflow':>12} "
          f"{'zmq/reflow':>11}")
    for size in sizes:
        for n in FANOUT:
            r = {x["peer"]: x["p50_s"] * 1e3 for x in rows if x["size"] == size and x["subscribers"] == n}
            print(f"{size >> 20:>4}MB {n:>5} {r['reflow']:10.2f} {r['pipe']:9.2f} {r['zmq']:8.2f} "
                  f"{r['pipe'] / r['reflow']:12.1f} {r['zmq'] / r['reflow']:11.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": len(os.sched_getaffinity(0)),
                               "rows": rows}, indent=1))
    plot(rows, sizes, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(rows: list[dict[str, Any]], sizes: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 4))
    for ax, size in zip(axes, sizes, strict=True):
        for peer in ("reflow", "pipe", "zmq"):
            mine = [r for r in rows if r["size"] == size and r["peer"] == peer]
            pts = [(r["subscribers"], r["p50_s"] * 1e3) for r in mine]
            ax.plot(*zip(*pts, strict=True), marker="o", label=peer, lw=2.5 if peer == "reflow" else 1)
        ax.set(yscale="log", xlabel="subscribers", title=f"{size >> 20} MB to all subscribers",
               xticks=FANOUT)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("p50 latency until the last holds it (ms)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
