"""Speed and memory of the FLeCS GRN product kernels (celldyn.nn).

Usage::

    python benchmarks/flecs_speed.py              # main table: 4,000 genes, 600k edges, 2,112 cells
    python benchmarks/flecs_speed.py --crossover  # dense vs csr sweep behind select_kernel

Main table: every (kernel, task) pair runs in its own subprocess so that ``ru_maxrss`` is that
task's peak resident memory (torch allocations are invisible to tracemalloc). Tasks, float32,
CPU, ``torch.set_num_threads(2)`` (``--threads 1`` for a run that is robust to other jobs on
the cores: with 2 threads, every parallel op waits for a descheduled thread when the machine
is shared, which slows small ops by up to 10x):

- ``velocity``: one evaluation of the vector field ``f(G)`` at all 2,112 cells, no gradient.
- ``train_velocity``: forward + backward of ``mean((f(G_batch) - V_batch)^2)`` for a batch of
  512 cells, gradients to all parameters (weights, bias, decay).
- ``train_ode``: forward + backward of ``mean((y(1) - target)^2)`` where ``y`` is a fixed-step
  RK4 solve (2 steps over [0, 1], 8 field evaluations) from a batch of 64 cells.

``scatter`` is the per-edge gather/index_add message passing of the reference FLeCS code
(its gather uses ``index_select``, the fastest torch gather here, so the baseline is not a straw
man). Speed-ups are given on wall time (fastest of 5 runs after 2 warm-up runs; 1 run for
scatter; the median is shown too) and on the process CPU time of the fastest run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

N_GENES, N_EDGES, N_CELLS = 4000, 600_000, 2112
KERNELS = ("scatter", "dense", "csr", "auto")
TASKS = ("velocity", "train_velocity", "train_ode")


def _graph(n: int, n_edges: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randperm(n * n, generator=gen)[:n_edges]
    return flat // n, flat % n


def _timings(fn, repeats: int) -> dict:
    """Wall seconds (fastest and median of ``repeats`` runs) and CPU seconds of the fastest."""
    runs = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - start, time.process_time() - cpu))
    fastest = min(runs)
    return {
        "seconds": fastest[0],
        "median_seconds": statistics.median(r[0] for r in runs),
        "cpu_seconds": fastest[1],
    }


def run_task(kernel: str, task: str, threads: int = 2) -> dict:
    """Time one task with one kernel in this process; return seconds and peak RSS."""
    from celldyn.nn import GRNVectorField, integrate

    torch.set_num_threads(threads)
    src, dst = _graph(N_GENES, N_EDGES)
    field = GRNVectorField(N_GENES, src, dst, kernel=kernel)
    gen = torch.Generator().manual_seed(1)
    genes = torch.rand(N_CELLS, N_GENES, generator=gen) * 3
    target = torch.randn(N_CELLS, N_GENES, generator=gen) * 0.1

    if task == "velocity":

        def step():
            with torch.no_grad():
                field.gene_velocity(genes)

    elif task == "train_velocity":

        def step():
            field.zero_grad(set_to_none=True)
            loss = torch.mean((field.gene_velocity(genes[:512]) - target[:512]) ** 2)
            loss.backward()

    else:
        t = torch.tensor([0.0, 1.0])

        def step():
            field.zero_grad(set_to_none=True)
            y = integrate(field, genes[:64], t, method="rk4", options={"step_size": 0.5})
            torch.mean((y[-1] - genes[64:128]) ** 2).backward()

    if kernel == "scatter":
        timings = _timings(step, 1)  # 5-60 s per run: no warm-up, one run
    else:
        step()
        step()  # warm-up: allocator and sparse-library caches
        timings = _timings(step, 5)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = {"velocity": N_CELLS, "train_velocity": 512, "train_ode": 64}[task]
    return {
        "kernel": kernel,
        "resolved": field.grn.resolved_kernel(n_rows=rows),
        "task": task,
        **timings,
        "peak_rss_mib": peak_mib,
    }


def _subprocess(kernel: str, task: str, threads: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--one", kernel, task, "--threads", str(threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _machine(threads: int) -> str:
    model = platform.processor() or "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line
        )
    except (OSError, StopIteration):
        pass
    return f"{model}, torch.set_num_threads({threads}), torch {torch.__version__}"


def main_table(threads: int) -> None:
    results = {}
    for task in TASKS:
        for kernel in KERNELS:
            res = _subprocess(kernel, task, threads)
            results[(kernel, task)] = res
            print(
                f"{task:15s} {kernel:8s} ({res['resolved']:7s}) {res['seconds']:8.3f} s "
                f"(CPU {res['cpu_seconds']:8.3f} s) peak RSS {res['peak_rss_mib']:8.0f} MiB",
                flush=True,
            )
    print(f"\nMachine: {_machine(threads)}; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{N_GENES} genes, {N_EDGES} edges, {N_CELLS} cells, float32\n")
    columns = ["wall (s)", "speed-up", "median (s)", "CPU (s)", "CPU speed-up", "peak RSS (MiB)"]
    print("| task | kernel | " + " | ".join(columns) + " |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for task in TASKS:
        base = results[("scatter", task)]
        for kernel in KERNELS:
            res = results[(kernel, task)]
            name = kernel if kernel != "auto" else f"auto (= {res['resolved']})"
            print(
                f"| {task} | {name} | {res['seconds']:.3f} | "
                f"{base['seconds'] / res['seconds']:.1f}x | {res['median_seconds']:.3f} | "
                f"{res['cpu_seconds']:.3f} | "
                f"{base['cpu_seconds'] / res['cpu_seconds']:.1f}x | {res['peak_rss_mib']:.0f} |"
            )


def crossover(threads: int) -> None:
    """Forward + backward of GRNLinear alone: dense vs csr (vs scatter when it fits)."""
    from celldyn.nn import GRNLinear

    torch.set_num_threads(threads)
    print("| n | density | rows | dense (ms) | csr (ms) | scatter (ms) | best |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for n in (128, 256, 512, 1000, 2000, 4000):
        for density in (0.01, 0.05, 0.1, 0.2, 0.4):
            n_edges = max(1, int(density * n * n))
            if n_edges > 2_000_000:
                continue
            src, dst = _graph(n, n_edges)
            for rows in (64, 512, 2112):
                x = torch.rand(rows, n)
                layers = {k: GRNLinear(n, src, dst, kernel=k) for k in ("dense", "csr", "scatter")}
                if rows * n_edges > 3e7:
                    del layers["scatter"]
                times = {k: [] for k in layers}
                for _ in range(5):  # interleaved repeats, best of 5: robust to a busy machine
                    for kernel, layer in layers.items():
                        layer.weight.grad = None
                        start = time.perf_counter()
                        layer(x).square().mean().backward()
                        times[kernel].append(time.perf_counter() - start)
                best = {k: min(v) * 1e3 for k, v in times.items()}
                winner = min(best, key=best.get)
                sc = f"{best['scatter']:.2f}" if "scatter" in best else "-"
                print(
                    f"| {n} | {density} | {rows} | {best['dense']:.2f} | {best['csr']:.2f} | "
                    f"{sc} | {winner} |",
                    flush=True,
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crossover", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("KERNEL", "TASK"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_task(*args.one, threads=args.threads)))
    elif args.crossover:
        crossover(args.threads)
    else:
        main_table(args.threads)
