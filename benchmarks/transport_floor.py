"""Claim (a reference point, not a win): the floor for a round trip of reflow's shape, written in Python.

The same shape as a reflow ``Channel`` echo of a large message, with nothing else: the sender copies the
payload into a block of a shared-memory segment and sends a 16-byte handle over a unix ``SOCK_SEQPACKET``
socket; the echo builds the arrays as views on the block (one weak reference to release it) and sends the
same handle back; the sender builds its views and drops them. Both sides spin on a non-blocking receive with
``sched_yield``, as reflow's subscriber does. No allocator, no release table, no checks, no other payload:
what is left is the copy, two socket hand-offs and a few lines of Python. reflow's round trip, measured in the
same run, shows what its machinery costs on top (``x floor``); the bound is two in-process memcpys, as in
``transport_latency.py``.

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/transport_floor.py [--rounds 2000] [--quick]
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing as mp
import os
import socket
import statistics
import struct
import time
import weakref
from typing import Any

import numpy as np
import transport_peers as tp
from transport_latency import memcpy_samples, payload

CTX = mp.get_context("spawn")
HANDLE = struct.Struct("<QQ")  # release flag index, offset
SEGMENT = 8 << 20
MB = 1 << 20
STOP = (1 << 64) - 1  # a handle's flag index that tells the echo to end


def segment(name: str, create: bool) -> np.ndarray[Any, Any]:
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR | (os.O_CREAT if create else 0))
    try:
        if create:
            os.ftruncate(fd, SEGMENT)
        return np.frombuffer(mmap.mmap(fd, SEGMENT), np.uint8)
    finally:
        os.close(fd)


def layout(kind: str) -> list[tuple[str, int, int]]:
    """(name, offset, size) of each buffer of a 1 MB payload in the block."""
    return [("", 0, MB)] if kind == "array" else [(k, i * MB // 4, MB // 4) for i, k in enumerate("abcd")]


def receive(sock: socket.socket, buf: bytearray, seg: np.ndarray[Any, Any], flags: bytearray,
            parts: list[tuple[str, int, int]]) -> Any:
    while True:
        try:
            sock.recv_into(buf)
            break
        except BlockingIOError:
            os.sched_yield()
    flag, offset = HANDLE.unpack_from(buf)
    if flag == STOP:
        return None
    block = seg[offset:offset + MB].view(np.ndarray)  # a new object whose death releases the block
    weakref.finalize(block, flags.__setitem__, flag, 1)
    if len(parts) == 1:
        return np.ndarray((MB,), np.uint8, block, 0)
    return {k: np.ndarray((size,), np.uint8, block, off) for k, off, size in parts}


def echo(name: str, kind: str) -> None:
    seg = segment(name, False)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect("\0" + name)
    sock.setblocking(False)
    buf, flags, parts = bytearray(64), bytearray(16), layout(kind)
    while True:
        value = receive(sock, buf, seg, flags, parts)
        if value is None:
            return
        sock.send(bytes(buf[:HANDLE.size]))  # forward: the same handle back
        del value


def floor_round_trips(kind: str, rounds: int) -> list[float]:
    name = f"reflow-floor-{os.getpid()}-{kind}"
    seg = segment(name, True)
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listen.bind("\0" + name)
    listen.listen(1)
    child = CTX.Process(target=echo, args=(name, kind))
    child.start()
    try:
        conn, _ = listen.accept()
        conn.setblocking(False)
        msg = payload(kind, MB)
        arrays = [msg] if kind == "array" else list(msg.values())
        buf, flags, parts = bytearray(64), bytearray(16), layout(kind)
        base = 4096
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for arr, (_, off, size) in zip(arrays, parts, strict=True):
                seg[base + off:base + off + size] = arr
            conn.send(HANDLE.pack(0, base))
            back = receive(conn, buf, seg, flags, parts)
            del back
            times.append(time.perf_counter() - t0)
        conn.send(HANDLE.pack(STOP, 0))
        child.join(10)
        conn.close()
        return times
    finally:
        listen.close()
        if child.is_alive():
            child.kill()
        os.unlink(f"/dev/shm/{name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2000, help="round trips per payload and system")
    ap.add_argument("--quick", action="store_true", help="200 round trips")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 200
    peers, _ = tp.start_peers(["reflow"])
    try:
        print(f"{'1 MB':>6} {'floor p50 us':>13} {'reflow p50 us':>14} {'x floor':>8} {'x bound':>8}")
        for kind in ("array", "dict"):
            floor = statistics.median(floor_round_trips(kind, args.rounds))
            msg = payload(kind, MB)
            peers[0].roundtrip(msg)
            mine = statistics.median(peers[0].roundtrip(msg) for _ in range(args.rounds))
            bound = 2 * statistics.median(memcpy_samples(MB, 300))
            print(f"{kind:>6} {floor * 1e6:13.1f} {mine * 1e6:14.1f} {mine / floor:8.2f} {mine / bound:8.2f}")
    finally:
        for p in peers:
            p.close()


if __name__ == "__main__":
    main()
