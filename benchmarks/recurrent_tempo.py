"""Runs Tempo's own REINFORCE program under Tempo's venv, for benchmarks/recurrent_rl.py (not a benchmark).

The program is lsds/Tempo's repro/sec7_4_algo_specific_sched/impls/tempo_reinforce.py, imported from a Tempo
checkout and called with its own arguments; the one change is that it does not draw its schedule with
Graphviz (``render_schedule``), whose ``dot`` program is not installed here. Prints one JSON line: compile
and run seconds, and the seconds between consecutive iterations' log records.

Usage: /tmp/tempo-venv/bin/python benchmarks/recurrent_tempo.py --tempo-src DIR B T I (mc|N) (jax|torch)
"""

import json
import sys
import time

if sys.argv[1] == "--tempo-src":
    sys.path.insert(0, sys.argv[2])
    del sys.argv[1:3]

import repro.sec7_4_algo_specific_sched.impls.tempo_reinforce as impl

_config = impl.get_tempo_rl_train_config


def _no_render(**kw):  # type: ignore[no-untyped-def]
    cfg = _config(**kw)
    cfg.render_schedule = False
    return cfg


impl.get_tempo_rl_train_config = _no_render


class Log:
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.t: list[float] = []

    def log(self, d: dict[str, float]) -> None:
        self.rows.append(d)
        self.t.append(time.perf_counter())


def main() -> None:
    B, T, iters = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    obj = None if sys.argv[4] == "mc" else int(sys.argv[4])
    backend = sys.argv[5]
    log = Log()
    t0 = time.perf_counter()
    exe = impl.get_tempo_reinforce_executor(
        log, env_name="trivial.trivial", num_envs=B, ep_len=T, iterations=iters, params_per_layer=64,
        num_layers=2, objective=obj, seed=0, dev="cpu", sys_cfg=f"tempo-{backend}",
        results_path="/tmp/tempo_results", obs_shape=(3, 4, 4))
    t1 = time.perf_counter()
    exe.execute()
    t2 = time.perf_counter()
    per = [b - a for a, b in zip([t1, *log.t], log.t, strict=False)]
    print(json.dumps({"compile_s": t1 - t0, "run_s": t2 - t1, "iterations": len(log.rows),
                      "per_iteration": per, "returns": [r["mean_episode_return"] for r in log.rows]}))


if __name__ == "__main__":
    main()
