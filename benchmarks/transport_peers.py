"""The transports compared by transport_latency.py: each one an echo child process and a ``roundtrip``.

Every peer is driven the way its documentation recommends for large binary data, so the comparison is with
the peer at its best, not a strawman:

* ``reflow``: ``reflow.transport.Channel`` (inline frames up to 64 KB, the shared-memory store above). The
  echo sends back what it received, which reflow *forwards* (``reflow.transport.forward``): a handle to the
  sender's own block, no copy. So a large round trip copies once (the sender's copy into its store), where
  every other peer copies once per direction.
* ``reflow loan``: the same channel, but each side builds its message in a block loaned from its store
  (``Channel.loan``) and sends that without a copy: the sender writes the payload into the loan (counted in
  the round trip, as iceoryx2's write into its loaned sample is), the echo copies the received view into a
  loan of its own. One copy per direction (what ``reflow`` paid before forwarding), made by the producer.
  Arrays only (a loan is one array).
* ``mp.Queue`` / ``mp.Pipe``: the standard library, pickling the payload (protocol 5, in band).
* ``zmq``: a PAIR socket over ``ipc://``, the payload pickled with protocol 5 and its array buffers sent as
  separate zero-copy frames (``copy=False``).
* ``ray``: ``ray.put`` then an actor method returning its argument, ``ray.get`` on the result (Ray's
  shared-memory object store; numpy arrays come back as zero-copy views).
* middlewares (Cyclone DDS, Zenoh): see their classes below; they carry bytes, so the payload is pickled
  (protocol 5, buffers joined) on the way in, the receiver echoes the bytes, and the sender unpickles.
* ``iceoryx2``: zero-copy shared-memory pub/sub (Rust core), one service per direction whose payload is a
  dynamic byte slice (``Slice[c_uint8]``, power-of-two growth), so one service carries every size. The value
  is pickled with protocol 5 and its buffers out of band, and head and buffers are written straight into a
  loaned sample (one copy per direction, like reflow's store); the echo copies each sample into one loaned
  from its own publisher; the sender unpickles with the buffers viewing the received sample (no copy). Its
  Python API has no blocking receive on a pub/sub port, so both sides poll ``receive()`` in a loop that
  yields the CPU between polls: iceoryx2 at its lowest latency, paid for with a busy core per waiting side.
  Between its turns (``Peer.pause``) the echo polls once a millisecond instead: while the other peers take
  theirs it would otherwise keep a core busy, which on a 2-core machine slowed every other peer (reflow's
  1 MB round trip: 185-195 us alone, 290-325 us beside a polling iceoryx2 echo). Within its own turn it
  polls flat out as before; the warm-up round trip of each turn absorbs the first wake-up.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import pickle
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from reflow.transport import Channel

CTX = mp.get_context("spawn")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def dumps(value: Any) -> tuple[bytes, list[Any]]:
    bufs: list[pickle.PickleBuffer] = []
    head = pickle.dumps(value, protocol=5, buffer_callback=bufs.append)
    return head, [b.raw() for b in bufs]


# --- children ------------------------------------------------------------------------------------------
def reflow_echo(name: str, channel: type[Channel] = Channel) -> None:
    """Send back what arrives; ``channel``: the ``Channel`` class of another copy of reflow
    (``transport_ab.py``)."""
    with channel(name, "b", store_bytes=320 << 20, timeout=60) as ch:
        while True:
            v = ch.recv()
            if isinstance(v, str) and v == "stop":
                return
            ch.send(v)
            del v


def reflow_loan_echo(name: str) -> None:
    with Channel(name, "b", store_bytes=320 << 20, timeout=60) as ch:
        while True:
            v = ch.recv()
            if isinstance(v, str) and v == "stop":
                return
            out = ch.loan(v.shape, v.dtype)
            np.copyto(out, v)
            del v
            ch.send(out)
            del out


def queue_echo(qin: Any, qout: Any) -> None:
    while True:
        v = qin.get()
        if isinstance(v, str) and v == "stop":
            return
        qout.put(v)


def pipe_echo(conn: Any) -> None:
    while True:
        v = conn.recv()
        if isinstance(v, str) and v == "stop":
            return
        conn.send(v)


def zmq_echo(addr: str) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR)
    s.connect(addr)
    while True:
        frames = s.recv_multipart(copy=False)
        if frames[0].bytes == b"stop":
            break
        s.send_multipart(frames, copy=False)
    s.close(linger=0)
    ctx.term()


ZENOH_PORT = 17447


def zenoh_config(listen: bool, port: int) -> Any:
    import zenoh

    ends = f'listen: {{endpoints: ["tcp/127.0.0.1:{port}"]}}' if listen else \
        f'connect: {{endpoints: ["tcp/127.0.0.1:{port}"]}}'
    return zenoh.Config.from_json5(f'{{mode: "peer", {ends}, scouting: {{multicast: {{enabled: false}}}}}}')


def zenoh_echo(port: int) -> None:
    import zenoh

    with zenoh.open(zenoh_config(False, port)) as session:
        pub = session.declare_publisher("reflow/bench/pong")
        sub = session.declare_subscriber("reflow/bench/ping")
        while True:
            data = sub.recv().payload.to_bytes()
            if data == b"stop":
                return
            pub.put(data)


@functools.cache
def dds_types() -> Any:
    from dataclasses import dataclass

    from cyclonedds.idl import IdlStruct
    from cyclonedds.idl.types import sequence, uint8

    # Built with real (not string) annotations: this module uses postponed annotations, which cyclonedds
    # cannot resolve for a class made inside a function. DDS has no bytes type: a payload is a
    # sequence<uint8>, which the Python binding reads back as a list of ints (its main cost at large sizes).
    fields = {"__annotations__": {"data": sequence[uint8]}}
    return dataclass(type("Blob", (IdlStruct,), fields, typename="reflow.Blob"))


def dds_endpoints(write: str, read: str) -> tuple[Any, Any, Any]:
    from cyclonedds.core import Policy, Qos
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
    from cyclonedds.util import duration

    blob = dds_types()
    qos = Qos(Policy.Reliability.Reliable(duration(seconds=10)), Policy.History.KeepLast(4))
    dp = DomainParticipant(0)
    writer = DataWriter(dp, Topic(dp, write, blob), qos=qos)
    reader = DataReader(dp, Topic(dp, read, blob), qos=qos)
    return dp, writer, reader


def dds_take(reader: Any) -> bytes:
    from cyclonedds.util import duration

    while True:
        for sample in reader.take_iter(timeout=duration(seconds=30)):
            return bytes(sample.data)


def dds_echo() -> None:
    _, writer, reader = dds_endpoints("reflow_pong", "reflow_ping")
    blob = dds_types()
    while True:
        data = dds_take(reader)
        if data == b"stop":
            return
        writer.write(blob(data=data))


PAUSE = b"idle"  # tells the iceoryx2 echo that its turn is over: poll slowly until the next message
ICEORYX_FRAME = struct.Struct("<I")  # number of out-of-band buffers; then their sizes and the head's, <Q each


def iceoryx_ports(tag: str, send: str, recv: str) -> tuple[Any, Any, Any]:
    """A node, a publisher on ``tag/send`` and a subscriber on ``tag/recv``, both byte-slice services."""
    import ctypes

    import iceoryx2 as iox2

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)

    def service(name: str) -> Any:
        return (node.service_builder(iox2.ServiceName.new(f"{tag}/{name}"))
                .publish_subscribe(iox2.Slice[ctypes.c_uint8]).open_or_create())

    pub = (service(send).publisher_builder().initial_max_slice_len(4096)
           .allocation_strategy(iox2.AllocationStrategy.PowerOfTwo).create())
    return node, pub, service(recv).subscriber_builder().create()


def iceoryx_take(sub: Any, timeout: float | None = None, slow: bool = False) -> Any:
    """The next sample, polling (the pub/sub port has no blocking receive), yielding the CPU between polls,
    or, ``slow``, sleeping a millisecond between them."""
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        sample = sub.receive()
        if sample is not None:
            return sample
        if end is not None and time.monotonic() > end:
            raise TimeoutError
        if slow:
            time.sleep(0.001)
        else:
            os.sched_yield()


def iceoryx_bytes(address: int, n: int) -> np.ndarray[Any, Any]:
    """A writable numpy view on ``n`` bytes of a sample (no copy)."""
    import ctypes

    return np.frombuffer((ctypes.c_uint8 * n).from_address(address), np.uint8)


def iceoryx_echo(tag: str) -> None:
    import ctypes

    _node, pub, sub = iceoryx_ports(tag, "pong", "ping")  # the node must outlive its ports
    paused = False
    while True:
        sample = iceoryx_take(sub, slow=paused)
        n = sample.payload().len()
        paused = n == len(PAUSE) and bytes(iceoryx_bytes(sample.payload_ptr, n)) == PAUSE
        if paused:
            sample.delete()
            continue
        out = pub.loan_slice_uninit(n)
        ctypes.memmove(out.payload_ptr, sample.payload_ptr, n)
        stop = n == 4 and bytes(iceoryx_bytes(sample.payload_ptr, 4)) == b"stop"
        sample.delete()
        out.assume_init().send()
        if stop:
            return


# --- peers ---------------------------------------------------------------------------------------------
class Peer:
    name = "?"

    def pause(self) -> None:
        """The end of this peer's turn in a repeat: an echo that polls can stop doing so until the next."""
    max_size = 1 << 40  # payloads above this are not run (and the reason is printed)
    kinds: tuple[str, ...] = ("array", "dict")  # payload kinds it can carry (others are reported, not run)

    def roundtrip(self, value: Any) -> float:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class ReflowPeer(Peer):
    name = "reflow"

    def __init__(self) -> None:
        tag = f"bench-{os.getpid()}"
        self.proc = CTX.Process(target=reflow_echo, args=(tag,), daemon=True)
        self.proc.start()
        self.ch = Channel(tag, "a", store_bytes=320 << 20, timeout=60).connect(60)

    def roundtrip(self, value: Any) -> float:
        t0 = time.perf_counter()
        self.ch.send(value)
        back = self.ch.recv()
        t = time.perf_counter() - t0
        del back
        return t

    def close(self) -> None:
        self.ch.send("stop")
        self.proc.join(10)
        self.ch.close()


class ReflowLoanPeer(ReflowPeer):
    name = "reflow loan"
    kinds = ("array",)

    def __init__(self) -> None:
        tag = f"bench-loan-{os.getpid()}"
        self.proc = CTX.Process(target=reflow_loan_echo, args=(tag,), daemon=True)
        self.proc.start()
        self.ch = Channel(tag, "a", store_bytes=320 << 20, timeout=60).connect(60)

    def roundtrip(self, value: Any) -> float:
        t0 = time.perf_counter()
        out = self.ch.loan(value.shape, value.dtype)
        np.copyto(out, value)  # the producer writes its message in place
        self.ch.send(out)
        del out
        back = self.ch.recv()
        t = time.perf_counter() - t0
        del back
        return t


class QueuePeer(Peer):
    name = "mp.Queue"

    def __init__(self) -> None:
        self.qin, self.qout = CTX.Queue(), CTX.Queue()
        self.proc = CTX.Process(target=queue_echo, args=(self.qin, self.qout), daemon=True)
        self.proc.start()

    def roundtrip(self, value: Any) -> float:
        t0 = time.perf_counter()
        self.qin.put(value)
        self.qout.get()
        return time.perf_counter() - t0

    def close(self) -> None:
        self.qin.put("stop")
        self.proc.join(10)


class PipePeer(Peer):
    name = "mp.Pipe"

    def __init__(self) -> None:
        self.conn, child = CTX.Pipe()
        self.proc = CTX.Process(target=pipe_echo, args=(child,), daemon=True)
        self.proc.start()

    def roundtrip(self, value: Any) -> float:
        t0 = time.perf_counter()
        self.conn.send(value)
        self.conn.recv()
        return time.perf_counter() - t0

    def close(self) -> None:
        self.conn.send("stop")
        self.proc.join(10)


class ZmqPeer(Peer):
    name = "zmq"

    def __init__(self) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PAIR)
        self.addr = f"ipc:///tmp/reflow-bench-zmq-{os.getpid()}"
        self.sock.bind(self.addr)
        self.proc = CTX.Process(target=zmq_echo, args=(self.addr,), daemon=True)
        self.proc.start()

    def roundtrip(self, value: Any) -> float:
        t0 = time.perf_counter()
        head, bufs = dumps(value)
        self.sock.send_multipart([head, *bufs], copy=False)
        frames = self.sock.recv_multipart(copy=False)
        pickle.loads(frames[0].buffer, buffers=[f.buffer for f in frames[1:]])
        return time.perf_counter() - t0

    def close(self) -> None:
        self.sock.send(b"stop")
        self.proc.join(10)
        self.sock.close(linger=0)
        self.ctx.term()
        if os.path.exists(self.addr[6:]):
            os.unlink(self.addr[6:])


class RayPeer(Peer):
    name = "ray"

    def __init__(self) -> None:
        import logging

        import ray

        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 object_store_memory=1 << 30)

        @ray.remote
        class Echo:
            def echo(self, v: Any) -> Any:
                return v

        self.ray = ray
        self.actor = Echo.remote()  # type: ignore[attr-defined]
        ray.get(self.actor.echo.remote(0))

    def roundtrip(self, value: Any) -> float:
        t0 = time.perf_counter()
        ref = self.ray.put(value)
        back = self.ray.get(self.actor.echo.remote(ref))
        t = time.perf_counter() - t0
        del back, ref
        return t

    def close(self) -> None:
        self.ray.shutdown()


class BytesPeer(Peer):
    """A peer that carries bytes: pickle the value (protocol 5, buffers joined) and unpickle the echo."""

    def send_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def recv_bytes(self) -> bytes:
        raise NotImplementedError

    def roundtrip(self, value: Any) -> float:
        t0 = time.perf_counter()
        self.send_bytes(pickle.dumps(value, protocol=5))
        pickle.loads(self.recv_bytes())
        return time.perf_counter() - t0

    def connect(self) -> None:
        """Ping until the echo answers: discovery in these middlewares is asynchronous."""
        for _ in range(200):
            self.send_bytes(pickle.dumps("ping"))
            try:
                self.recv_bytes_timeout(0.1)
                break
            except TimeoutError:
                continue
        else:
            raise TimeoutError(f"{self.name}: the echo process never answered")
        time.sleep(0.3)
        self.drain()

    def recv_bytes_timeout(self, timeout: float) -> bytes:
        raise NotImplementedError

    def drain(self) -> None:
        while True:
            try:
                self.recv_bytes_timeout(0.05)
            except TimeoutError:
                return


class ZenohPeer(BytesPeer):
    name = "zenoh"
    max_size = 16 << 20  # a 64 MB put never reached the echo in the default configuration (run hung)

    def __init__(self) -> None:
        import zenoh

        port = ZENOH_PORT + os.getpid() % 1000
        self.session = zenoh.open(zenoh_config(True, port))
        self.pub = self.session.declare_publisher("reflow/bench/ping")
        self.sub = self.session.declare_subscriber("reflow/bench/pong")
        self.proc = CTX.Process(target=zenoh_echo, args=(port,), daemon=True)
        self.proc.start()
        self.connect()

    def send_bytes(self, data: bytes) -> None:
        self.pub.put(data)

    def recv_bytes(self) -> bytes:
        return bytes(self.sub.recv().payload.to_bytes())

    def recv_bytes_timeout(self, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.sub.try_recv()
            if s is not None:
                return bytes(s.payload.to_bytes())
            time.sleep(0.001)
        raise TimeoutError

    def close(self) -> None:
        self.pub.put(b"stop")
        self.proc.join(10)
        self.session.close()


class CycloneDDSPeer(BytesPeer):
    name = "cyclonedds"
    max_size = 16 << 20  # above: >9 s per round trip (the binding builds a list of ints per byte)

    def __init__(self) -> None:
        self.blob = dds_types()
        self.dp, self.writer, self.reader = dds_endpoints("reflow_ping", "reflow_pong")
        self.proc = CTX.Process(target=dds_echo, daemon=True)
        self.proc.start()
        self.connect()

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(self.blob(data=data))

    def recv_bytes(self) -> bytes:
        return dds_take(self.reader)

    def recv_bytes_timeout(self, timeout: float) -> bytes:
        from cyclonedds.util import duration

        for sample in self.reader.take_iter(timeout=duration(milliseconds=int(timeout * 1000))):
            return bytes(sample.data)
        raise TimeoutError

    def close(self) -> None:
        self.send_bytes(b"stop")
        self.proc.join(10)


class IceoryxPeer(Peer):
    name = "iceoryx2"

    def __init__(self) -> None:
        tag = f"reflow-bench-{os.getpid()}"
        self.node, self.pub, self.sub = iceoryx_ports(tag, "ping", "pong")
        self.proc = CTX.Process(target=iceoryx_echo, args=(tag,), daemon=True)
        self.proc.start()
        for _ in range(1000):  # discovery is asynchronous: ping until the echo answers
            self.send_raw(b"ping")
            try:
                iceoryx_take(self.sub, 0.02).delete()
                break
            except TimeoutError:
                continue
        else:
            raise TimeoutError("iceoryx2: the echo process never answered")
        time.sleep(0.2)
        while (late := self.sub.receive()) is not None:
            late.delete()

    def pause(self) -> None:
        self.send_raw(PAUSE)

    def send_raw(self, data: bytes) -> None:
        out = self.pub.loan_slice_uninit(len(data))
        iceoryx_bytes(out.payload_ptr, len(data))[:] = np.frombuffer(data, np.uint8)
        out.assume_init().send()

    def send(self, value: Any) -> None:
        head, bufs = dumps(value)
        sizes = [len(head), *(b.nbytes for b in bufs)]
        prefix = ICEORYX_FRAME.pack(len(bufs)) + struct.pack(f"<{len(sizes)}Q", *sizes)
        total = len(prefix) + sum(sizes)
        out = self.pub.loan_slice_uninit(total)
        dst = iceoryx_bytes(out.payload_ptr, total)
        pos = 0
        for part in (prefix, head, *bufs):
            n = len(part) if isinstance(part, bytes) else part.nbytes
            dst[pos:pos + n] = np.frombuffer(part, np.uint8)
            pos += n
        del dst
        out.assume_init().send()

    def roundtrip(self, value: Any) -> float:
        t0 = time.perf_counter()
        self.send(value)
        sample = iceoryx_take(self.sub)
        data = iceoryx_bytes(sample.payload_ptr, sample.payload().len())
        (nbuf,) = ICEORYX_FRAME.unpack_from(data)
        sizes = struct.unpack_from(f"<{nbuf + 1}Q", data, ICEORYX_FRAME.size)
        pos = ICEORYX_FRAME.size + 8 * (nbuf + 1)
        parts = []
        for n in sizes:
            parts.append(data[pos:pos + n])
            pos += n
        back = pickle.loads(parts[0], buffers=parts[1:])  # arrays view the sample: no copy
        t = time.perf_counter() - t0
        del back, parts, data
        sample.delete()
        return t

    def close(self) -> None:
        self.send_raw(b"stop")
        self.proc.join(10)


PEERS: dict[str, Callable[[], Peer]] = {
    "reflow": ReflowPeer,
    "reflow loan": ReflowLoanPeer,
    "mp.Queue": QueuePeer,
    "mp.Pipe": PipePeer,
    "zmq": ZmqPeer,
    "ray": RayPeer,
    "cyclonedds": CycloneDDSPeer,
    "zenoh": ZenohPeer,
    "iceoryx2": IceoryxPeer,
}
ALL = list(PEERS)


# What Zenoh (``*.zenoh``) and iceoryx2 (``iox2_*``) leave in /dev/shm when their processes exit.
ZENOH_SHM_SUFFIX, ICEORYX2_SHM_PREFIX = ".zenoh", "iox2_"


def shm_entries() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def remove_foreign_shm(before: set[str]) -> list[str]:
    """Delete the Zenoh / iceoryx2 files this run created in /dev/shm (their libraries leave them behind)."""
    gone = sorted(n for n in shm_entries() - before
                  if n.endswith(ZENOH_SHM_SUFFIX) or n.startswith(ICEORYX2_SHM_PREFIX))
    for name in gone:
        with contextlib.suppress(OSError):
            os.unlink(f"/dev/shm/{name}")
    return gone


def start_peers(names: list[str]) -> tuple[list[Peer], dict[str, str]]:
    """Start the named peers; one that cannot start is skipped with the reason (reported in the table)."""
    peers, skipped = [], {}
    for n in names:
        try:
            peers.append(PEERS[n]())
        except Exception as exc:
            skipped[n] = f"{type(exc).__name__}: {exc}"[:300]
    return peers, skipped


if __name__ == "__main__":
    import sys

    ps, sk = start_peers(sys.argv[1:] or list(PEERS))
    x = np.zeros(1 << 20, np.uint8)
    for p in ps:
        print(p.name, min(p.roundtrip(x) for _ in range(5)))
        p.close()
    print(sk)
