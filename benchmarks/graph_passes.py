"""Claim: linear clustering + greedy merging places a dataflow graph on P workers with a shorter simulated
makespan than naive placement, in seconds for ~1000-node graphs.

For random layered DAGs (each node reads two of the previous 20 nodes, costs uniform in 0.1-2 s, edges of 0,
1 KB or 1 MB) and P workers, the simulated makespan of ``merge_clusters(linear_clustering(g))`` is compared,
on the same graphs in the same run, with round-robin placement in topological order (the peer: what a
runtime does with no cost model), under no comm cost and under a 1 ms + 1 GB/s link. Ratios < 1 favour
reflow. Makespans are deterministic; the table shows medians over seeds, and the median wall time of the
placement itself.

    flock /tmp/reflow-bench.lock .venv/bin/python benchmarks/graph_passes.py [--quick]

Writes results/graph_passes.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

from tqdm import tqdm

from reflow.graph import (
    Clustering,
    CommModel,
    Graph,
    critical_path,
    linear_clustering,
    merge_clusters,
    simulate,
    topo_order,
)

COMMS = {"none": CommModel(), "1ms+1GB/s": CommModel(latency=1e-3, bandwidth=1e9)}


def layered(n: int, seed: int) -> Graph:
    rng = random.Random(seed)
    g = Graph(f"layered{n}")
    g.add("x", "input", cost=0.0)
    names = ["x"]
    for i in range(n - 1):
        g.add(f"n{i}", "call", ["a", "b"], cost=rng.uniform(0.1, 2.0))
        for p in ("a", "b"):
            g.connect(rng.choice(names[-20:]), "out", f"n{i}", p, size=rng.choice([0.0, 1e3, 1e6]))
        names.append(f"n{i}")
    return g


def round_robin(g: Graph, workers: int) -> Clustering:
    order = topo_order(g)
    return Clustering(tuple(tuple(order[w::workers]) for w in range(workers) if order[w::workers]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small graphs, few seeds")
    args = ap.parse_args()
    sizes, seeds, workers = ([100, 300], 2, [2, 4]) if args.quick else ([100, 300, 900], 5, [2, 4, 8])
    rows = []
    jobs = [(n, p, c) for n in sizes for p in workers for c in COMMS]
    for n, p, cname in tqdm(jobs, desc="graph_passes"):
        comm = COMMS[cname]
        ratios, bounds, secs = [], [], []
        for seed in range(seeds):
            g = layered(n, seed)
            t0 = time.perf_counter()
            placed = merge_clusters(g, linear_clustering(g, comm), p, comm)
            secs.append(time.perf_counter() - t0)
            ours = simulate(g, placed, comm).makespan
            ratios.append(ours / simulate(g, round_robin(g, p), comm).makespan)
            bounds.append(ours / max(critical_path(g)[1], g.total_cost() / p))
        rows.append({"nodes": n, "workers": p, "comm": cname,
                     "makespan_vs_round_robin": statistics.median(ratios),
                     "makespan_vs_lower_bound": statistics.median(bounds),
                     "place_seconds": statistics.median(secs)})
    print(f"{'nodes':>6} {'P':>3} {'comm':>11} {'vs round-robin':>15} {'vs lower bound':>15} {'place s':>8}")
    for r in rows:
        print(f"{r['nodes']:>6} {r['workers']:>3} {r['comm']:>11} {r['makespan_vs_round_robin']:>15.3f} "
              f"{r['makespan_vs_lower_bound']:>15.3f} {r['place_seconds']:>8.3f}")
    out = Path("results/graph_passes.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "quick": args.quick, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
