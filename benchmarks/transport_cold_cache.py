"""Claim (an explanation, not a win): at 1 MB a message's Python work runs on caches the copy just flushed,
which is why a 1 MB round trip costs more than two memcpys and a dict of four arrays more than one array.

In one process (no second core involved), each measured as the median of many runs:

* ``copy``: ``np.copyto`` of 1 MB (the work the bound counts);
* ``publish``: ``publish`` + ``recv`` of a 64 B array through a ``Publisher`` / ``Subscriber`` pair;
* ``copy, then publish``: the two back to back, as in a 1 MB message (the copy, then the framing, send,
  receive and decoding around it); the *penalty* is what this costs beyond the two alone;
* the same for a 256 KB copy (fits the cache: no penalty expected), and for a socket send + receive and
  a little plain Python instead of the publish (which parts of the work suffer);
* the same for a 1 MB copy between buffers on 2 MB huge pages (``MADV_HUGEPAGE``): the copy then touches
  one or two TLB entries instead of 512, so if the penalty stays, it is the caches, not the TLB.

Run it with ``GLIBC_TUNABLES=glibc.cpu.x86_non_temporal_threshold=0x40000`` set to see how much of the
penalty goes away when glibc's memcpy uses non-temporal stores from 256 KB (it cannot be switched on from
inside a running process; the variable is read at process start).

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/transport_cold_cache.py [--quick]

Writes results/transport_cold_cache.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import platform
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from reflow.transport import Publisher, Subscriber


def median_us(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def huge_page_buffer(nbytes: int, keep: list[mmap.mmap]) -> tuple[np.ndarray[Any, Any], bool]:
    """``nbytes`` of anonymous memory on 2 MB huge pages where the kernel grants them (``MADV_HUGEPAGE``),
    and whether it did; the mapping goes to ``keep``."""
    huge = 2 << 20
    # room for whole 2 MB pages from the first boundary on: a huge page is only granted where it fits
    region = mmap.mmap(-1, -(-nbytes // huge) * huge + huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    keep.append(region)
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or THP switched off
        region.madvise(mmap.MADV_HUGEPAGE)
    whole = np.frombuffer(region, np.uint8)
    start = -whole.__array_interface__["data"][0] % huge  # the first 2 MB boundary
    buf = whole[start:start + nbytes]
    before = anon_huge_kb()
    buf[:] = 1  # fault the pages in
    return buf, anon_huge_kb() > before


def anon_huge_kb() -> int:
    """This process's memory on transparent huge pages, in KB (0 where the kernel does not say)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        text = Path("/proc/self/smaps_rollup").read_text()
        return int(text.split("AnonHugePages:")[1].split()[0])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs")
    ap.add_argument("--out", type=Path, default=Path("results/transport_cold_cache.json"))
    args = ap.parse_args()
    n = 300 if args.quick else 3000
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, 1 << 20, dtype=np.uint8)
    small = big[:64].copy()
    dst = np.empty(2 << 20, np.uint8)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    frame, into = b"x" * 64, bytearray(256)
    topic = f"cold-cache-{os.getpid()}"
    with Publisher(topic) as pub, Subscriber(topic) as sub:
        sub.wait_connected(10)
        pub.wait_for_subscribers(1)

        def publish() -> None:
            pub.publish(small)
            sub.recv()

        def sendrecv() -> None:
            a.send(frame)
            b.recv_into(into)

        def python() -> None:
            sum(range(200))

        rows = []
        mappings: list[mmap.mmap] = []
        huge_src, granted_src = huge_page_buffer(1 << 20, mappings)
        huge_dst, granted_dst = huge_page_buffer(1 << 20, mappings)
        huge_src[:] = big
        huge = granted_src and granted_dst
        cases = [(1 << 20, "4 KB", big, dst), (1 << 18, "4 KB", big, dst),
                 (1 << 20, "2 MB", huge_src, huge_dst)]
        for size, pages, source, target in cases:
            if pages == "2 MB" and not huge:
                print("huge pages not granted here (transparent_hugepage off?): that case is left out")
                continue
            src, out = source[:size], target[:size]

            def copy(src: np.ndarray[Any, Any] = src, out: np.ndarray[Any, Any] = out) -> None:
                np.copyto(out, src)

            alone = median_us(copy, n)
            for name, work in (("publish 64 B", publish), ("socket send+recv", sendrecv),
                               ("plain Python", python)):
                w = median_us(work, n)
                both = median_us(lambda work=work, copy=copy: (copy(), work()), n)
                rows.append({"copy_bytes": size, "pages": pages, "work": name, "copy_us": alone, "work_us": w,
                             "copy_then_work_us": both, "penalty_us": both - alone - w})

    a.close()
    b.close()
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    print(f"GLIBC_TUNABLES={tunables!r}")
    print(f"{'copy':>7} {'pages':>6} {'then':<18}{'copy us':>9}{'work us':>9}{'both us':>9}"
          f"{'penalty us':>12}")
    for r in rows:
        print(f"{r['copy_bytes'] >> 10:>5}KB {r['pages']:>6} {r['work']:<18}{r['copy_us']:>9.1f}"
              f"{r['work_us']:>9.1f}{r['copy_then_work_us']:>9.1f}{r['penalty_us']:>12.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                    "glibc_tunables": tunables, "runs": n,
                                    "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
