"""Flows the serving tests serve (a module of its own: worker processes unpickle its functions)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from reflow.serve import Array, Flow, Store


def risky(x: int, mode: str) -> int:
    """Misbehaves on request: raise, hang (interruptibly or not), kill its worker, or take its time."""
    if mode == "raise":
        raise ValueError(f"risky cannot take x={x}")
    if mode == "hang":
        time.sleep(3600)
    if mode == "stuck":  # deaf to the cancel signal, as native code would be
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        time.sleep(3600)
    if mode == "die":
        os._exit(3)
    if mode.startswith("sleep"):
        time.sleep(float(mode[5:]))
    return 2 * x


TAGS = Store("tags", {i: f"tag{i}" for i in range(10)})


def faulty() -> Flow:
    """x, mode -> risky(x, mode), then the tag of risky's answer looked up in a store."""
    flow = Flow("faulty", {"x": int, "mode": str})
    flow.map(risky, keep=["x"]).lookup(TAGS, "risky", column="tag")
    return flow


class Scorer:
    """A small torch MLP built in code with a fixed seed; called on batches of 8 rows."""

    def __init__(self) -> None:
        import torch

        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(),
                                       torch.nn.Linear(64, 4)).eval()

    def __call__(self, x: Array("float32", (32,))) -> Array("float32", (4,)):  # type: ignore[valid-type]
        import torch

        with torch.no_grad():
            return self.net(torch.from_numpy(x)).numpy()


def scoring() -> Flow:
    """A batched model (padded batches of 8): the determinism tests' flow."""
    flow = Flow("scoring", {"x": Array("float32", (32,))})
    flow.map(Scorer, batch=8, max_wait_ms=5, name="score")
    return flow


def inputs(n: int, rows: int = 1, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((rows, 32)).astype(np.float32) for _ in range(n)]


CLAIMS = "REFLOW_TEST_CLAIMS"  # environment variable: the directory racing replicas claim requests in
LOSER_SLEEP_S = 20.0


def straggler(x: int) -> int:
    """``2 * x``. Of two replicas racing on ``x``, the first to start claims ``x`` (a file made with O_EXCL)
    and straggles (sleeps until cancelled); the other answers at once. So every race has one loser, still
    running when the winner answers, whatever the machine's speed."""
    try:
        os.close(os.open(os.path.join(os.environ[CLAIMS], str(x)), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return 2 * x
    time.sleep(LOSER_SLEEP_S)
    return 2 * x


def racing() -> Flow:
    flow = Flow("racing", {"x": int})
    flow.map(straggler, high_variance=True, replicas=2)
    return flow


VECTORS = Store("vectors", {f"k{i}": np.full(1000, float(i)) for i in range(6)}, cache_bytes=2 * 8000 + 100)


def total(v: np.ndarray) -> float:
    return float(v.sum())


def cached_lookups() -> Flow:
    """key -> the sum of its vector (8 KB values; each worker caches two)."""
    flow = Flow("cached", {"key": str})
    flow.lookup(VECTORS, "key", column="v").map(total)
    return flow


class Broken:
    """A model that cannot load: its worker dies while starting."""

    def __init__(self) -> None:
        raise RuntimeError("no model file here")

    def __call__(self, x: int) -> int:
        return x


def broken() -> Flow:
    flow = Flow("broken", {"x": int})
    flow.map(Broken, name="broken_model")
    return flow


def passthrough(data: np.ndarray) -> np.ndarray:
    return data


def relay(size: int, maps: int = 3) -> Flow:
    """A chain of ``maps`` maps handing a ``size``-byte row on unchanged (the fusion benchmark's flow)."""
    flow = Flow("relay", {"data": Array("uint8", (size,))})
    s = flow
    for _ in range(maps):
        s = s.map(passthrough, names=["data"])
    return flow
