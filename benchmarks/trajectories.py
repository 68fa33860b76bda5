"""Benchmark of ``celldyn.pp.trajectories`` (kNN and quantile cell paths).

Synthetic data: ``n_cells`` cells in a 50-dimensional PCA-like space (a branching curve in
three dimensions plus noise whose variance decays like a PCA spectrum), 10 time groups, 10k
trajectories of length 10. Every measurement runs in its own subprocess, so peak memory
(``ru_maxrss``) belongs to that run alone.

    python benchmarks/trajectories.py            # all runs, markdown table on stdout
    python benchmarks/trajectories.py --quick    # 10k cells only

Measured: wall and CPU time of one ``pp.trajectories`` call after a warm-up call (numba
functions loaded from their on-disk cache), the peak RSS and the RSS before the call; the
numba compile cost (warm-up call with an empty cache directory); and, in the same process
for each size, the exact shortest-path search against a baseline: SciPy's Dijkstra from
every source (``scipy.sparse.csgraph.dijkstra(indices=sources)``) on the same graphs and
the same matched pairs (all paths at 10k cells, 50 per group pair at 100k).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

N_DIMS, N_GROUPS, N_TRAJ, LENGTH = 50, 10, 10_000, 10


def make_data(n_cells: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    tau = rng.uniform(0, 1, n_cells)
    branch = rng.integers(0, 2, n_cells)
    x = np.zeros((n_cells, N_DIMS))
    x[:, 0] = 10 * tau
    x[:, 1] = 3 * np.sin(3 * tau) + (2 * branch - 1) * 4 * np.clip(tau - 0.5, 0, None)
    x[:, 2] = 2 * np.cos(4 * tau)
    x += rng.normal(size=(n_cells, N_DIMS)) * 0.6 / np.sqrt(np.arange(1, N_DIMS + 1))
    time_group = np.floor(tau * N_GROUPS + rng.normal(0, 0.3, n_cells))
    return x, np.clip(time_group, 0, N_GROUPS - 1)


def make_adata(n_cells: int):
    import anndata as ad

    x, time_group = make_data(n_cells)
    adata = ad.AnnData(np.zeros((n_cells, 1), dtype=np.float32), obsm={"X_pca": x})
    adata.obs["celldyn_time"] = time_group
    return adata


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(n_cells: int, method: str) -> dict:
    import celldyn as cd

    cd.pp.trajectories(make_adata(2000), method=method, n_trajectories=50)  # warm-up
    adata = make_adata(n_cells)
    before = rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    cd.pp.trajectories(adata, method=method, n_trajectories=N_TRAJ, length=LENGTH)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    params = adata.uns["celldyn_trajectories"]["params"]
    return {
        "n_cells": n_cells,
        "method": method,
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before_mib": before,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "counts": {k: params[k] for k in ("n_redirected", "n_direct", "n_short") if k in params},
    }


def run_compile() -> dict:
    wall = time.perf_counter()
    import celldyn as cd

    adata = make_adata(2000)
    imported = time.perf_counter()
    cd.pp.trajectories(adata, n_trajectories=50)
    return {"import_s": imported - wall, "first_call_s": time.perf_counter() - imported}


def run_baseline(n_cells: int, n_ref: int) -> dict:
    """Our path search vs SciPy Dijkstra per source, same graphs and matched pairs.

    Ours runs on all pairs; SciPy on the first ``n_ref`` pairs of every group pair (its
    output is dense, ``n_ref x n_pair``); times are compared per query.
    """
    from scipy.sparse.csgraph import dijkstra

    from celldyn._readers import TimeGroups
    from celldyn.pp._couplings import match, uniform_sample
    from celldyn.pp._knn import forward_knn_graph, shortest_paths
    from celldyn.pp._trajectories import _allocate

    x, time_group = make_data(n_cells)
    values, codes = np.unique(time_group, return_inverse=True)
    groups = TimeGroups(values=values, labels=values.astype(object), codes=codes)
    rng = np.random.default_rng(0)
    shortest_paths(forward_knn_graph(x[:300], 150, 30), x[:300], [0], [200])  # warm-up
    per_pair = _allocate(N_TRAJ, np.bincount(codes)[1:].astype(float))
    t_ours = t_scipy = t_graph = 0.0
    n_ours = n_scipy = 0
    max_err = 0.0
    for g in range(groups.n_groups - 1):
        src, tgt = groups.members(g), groups.members(g + 1)
        sources = uniform_sample(len(src), int(per_pair[g]), rng)
        targets = len(src) + match(x[src], x[tgt], sources, batch_size=512, rng=rng)
        xp = np.concatenate([x[src], x[tgt]])
        t0 = time.perf_counter()
        graph = forward_knn_graph(xp, len(src), 30)
        t1 = time.perf_counter()
        _, _, dist, _ = shortest_paths(graph, xp, sources, targets, fallback_start=len(src))
        t2 = time.perf_counter()
        ref, _ = dijkstra(graph, indices=sources[:n_ref], return_predecessors=True)
        t3 = time.perf_counter()
        t_graph += t1 - t0
        t_ours += t2 - t1
        t_scipy += t3 - t2
        n_ours += len(sources)
        n_scipy += len(ref)
        err = ref[np.arange(len(ref)), targets[: len(ref)]] - dist[: len(ref)]
        max_err = max(max_err, float(np.max(np.abs(err))))
    return {
        "n_cells": n_cells,
        "graph_s": t_graph,
        "ours_s": t_ours,
        "ours_ms_per_path": 1e3 * t_ours / n_ours,
        "scipy_ms_per_path": 1e3 * t_scipy / n_scipy,
        "n_scipy": n_scipy,
        "max_abs_distance_difference": max_err,
    }


def child(args: list[str], env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    import numba

    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0]
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__} "
        f"({numba.get_num_threads()} threads), load average at start {load:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs="+")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "one":
            result = run_one(int(rest[0]), rest[1])
        elif kind == "compile":
            result = run_compile()
        else:
            result = run_baseline(int(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return

    print(f"Machine: {machine()}\n")
    with tempfile.TemporaryDirectory() as cache:
        cold = child(["compile"], env={**os.environ, "NUMBA_CACHE_DIR": cache})
    warm = child(["compile"])
    print(
        f"import celldyn.pp: {warm['import_s']:.1f} s; first call (2k cells, 50 paths): "
        f"{cold['first_call_s']:.1f} s with an empty numba cache (compilation), "
        f"{warm['first_call_s']:.1f} s with the cache\n"
    )
    sizes = [10_000] if args.quick else [10_000, 100_000]
    print("| cells | method | wall (s) | CPU (s) | RSS before (MiB) | peak RSS (MiB) | counts |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        for method in ["knn", "quantile"]:
            r = child(["one", str(n), method])
            print(
                f"| {n:,} | {method} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                f"{r['rss_before_mib']:.0f} | {r['peak_rss_mib']:.0f} | {r['counts']} |"
            )
    print(
        "\nExact path search on the same kNN graphs and matched pairs, per path: bidirectional "
        "A* with landmarks vs SciPy Dijkstra from each source:\n"
    )
    print("| cells | kNN graphs (s) | A* (s, all paths) | A* (ms/path) | SciPy (ms/path) | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n, n_ref in [(10_000, 100_000), (100_000, 50)][: len(sizes)]:
        b = child(["baseline", str(n), str(n_ref)])
        print(
            f"| {n:,} | {b['graph_s']:.1f} | {b['ours_s']:.1f} | {b['ours_ms_per_path']:.2f} | "
            f"{b['scipy_ms_per_path']:.2f} ({b['n_scipy']} paths) | "
            f"x{b['scipy_ms_per_path'] / b['ours_ms_per_path']:.0f} |"
        )
        assert b["max_abs_distance_difference"] < 1e-9, b


if __name__ == "__main__":
    main()
