"""Exact k-NN: our `ml.metrics.exact_knn.knn` against faiss-cpu's IndexFlatL2, same run.

Random float32 vectors from a fixed seed (default 10,000 queries x 200,000 reference rows x
512 dimensions, k = 5, the size of the design notes), plus `--offset` on every coordinate
(data far from the origin). Timed on the same data in the same run, alternating, `--repeats`
times each, medians reported, wall-clock and CPU seconds (all threads; on a machine shared
with other work the CPU seconds are the steadier figure):

- ours: `knn(..., backend="torch")`, exact (float32 matrix-product pass with screening,
  float64 re-rank with ties to the smaller index), on `--device` (cpu or cuda);
- faiss: `faiss.IndexFlatL2` (float32 expansion ||q||^2 + ||r||^2 - 2 q.r), always on the
  CPU, index built outside the timing (ours gets no such head start: centring and norms are
  inside);
- naive (once, on the first `--naive-queries` queries, skip with --no-naive): per chunk of
  1,024 queries, `torch.cdist` against the whole reference and `topk`, a fresh distance
  matrix each time; compared by queries/s, as it runs on fewer queries.

Torch, numpy's BLAS and faiss all get os.cpu_count() threads. Agreement: the share of query
rows whose k index sets are identical, and the largest distance difference; and against
brute force in float64 (numpy, sum((q - r)^2)) on the first `--check-rows` queries, which is
where faiss goes wrong with `--offset 1e4`.

    .venv/bin/python bench/knn.py
    .venv/bin/python bench/knn.py --queries 2000 --reference 20000 --dim 128
    .venv/bin/python bench/knn.py --queries 2000 --reference 20000 --dim 512 --offset 1e4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.metrics.exact_knn import knn  # noqa: E402

Result = tuple[np.ndarray, np.ndarray]


def naive(queries: np.ndarray, reference: np.ndarray, k: int, rows: int = 1024) -> Result:
    """What one writes first: cdist of a query chunk against everything, then topk."""
    ref = torch.from_numpy(reference)
    dists, idx = [], []
    for chunk in torch.from_numpy(queries).split(rows):
        values, cols = torch.cdist(chunk, ref).topk(k, dim=1, largest=False)
        dists.append(values)
        idx.append(cols)
    return torch.cat(dists).numpy(), torch.cat(idx).numpy()


def brute_force(queries: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest by float64 sum((q - r)^2), ties to the smaller index."""
    rows = []
    for q in queries.astype(np.float64):
        d2 = np.concatenate(
            [((q - chunk) ** 2).sum(axis=1) for chunk in np.array_split(reference, 64)]
        )
        rows.append(np.argsort(d2, kind="stable")[:k])
    return np.array(rows)


def timed(fn: Callable[[], Result]) -> tuple[float, float, Result]:
    """(wall seconds, CPU seconds of all threads, result)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def agreement(a: Result, b: Result) -> tuple[float, float]:
    """(share of rows with identical index sets, max |distance difference|)."""
    same = (np.sort(a[1], axis=1) == np.sort(b[1], axis=1)).all(axis=1).mean()
    return float(same), float(np.abs(a[0].astype(np.float64) - b[0]).max())


def gemm_only(dim: int, repeats: int) -> None:
    """The product of one block as `knn` does it on the CPU (4096 queries x 2048 reference
    rows x dim + 1 columns) through numpy's BLAS and through torch's, alternating: the
    reason `knn` uses numpy's on the CPU."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, dim + 1), dtype=np.float32)
    b = rng.standard_normal((2048, dim + 1), dtype=np.float32)
    out = np.empty((4096, 2048), np.float32)
    ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
    runs: dict[str, Callable[[], object]] = {
        "numpy (its BLAS)": lambda: np.matmul(a, b.T, out=out),
        "torch.mm": lambda: torch.mm(ta, tb.T, out=tout),
    }
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.process_time()
            fn()
            cpu[name].append(time.process_time() - start)
    flop = 2 * a.shape[0] * b.shape[0] * a.shape[1]
    rates = {name: flop / statistics.median(t) / 1e9 for name, t in cpu.items()}
    for name, rate in rates.items():
        print(f"{name:<17} {rate:6.1f} GFLOP per CPU-second (median of {repeats})")
    ratio = rates["numpy (its BLAS)"] / rates["torch.mm"]
    print(f"ratio numpy/torch GFLOP per CPU-second = {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--reference", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="where ours runs; faiss stays on CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=None, help="ours: reference rows")
    parser.add_argument("--no-naive", action="store_true", help="skip the cdist baseline")
    parser.add_argument("--naive-queries", type=int, default=2000, help="cdist baseline size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--offset", type=float, default=0.0, help="added to every coordinate")
    parser.add_argument("--check-rows", type=int, default=10, help="brute-force checked rows")
    parser.add_argument("--gemm", action="store_true", help="only time one block's product")
    args = parser.parse_args()
    try:
        import faiss
    except ImportError:
        raise SystemExit("faiss-cpu is not installed: pip install faiss-cpu") from None
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    if args.gemm:
        gemm_only(args.dim, max(args.repeats, 5))
        return

    rng = np.random.default_rng(args.seed)
    reference = rng.standard_normal((args.reference, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    reference += np.float32(args.offset)
    queries += np.float32(args.offset)
    index = faiss.IndexFlatL2(args.dim)
    index.add(reference)

    def ours() -> Result:
        result = knn(queries, reference, args.k, device=args.device, chunk_rows=args.chunk_rows)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return result

    def flat() -> Result:
        squared, idx = index.search(queries, args.k)
        return np.sqrt(np.maximum(squared, 0.0)), idx

    # Warm-up on a slice: thread pools, MKL / BLAS kernels, CUDA context.
    knn(queries[:256], reference, args.k, device=args.device, chunk_rows=args.chunk_rows)
    index.search(queries[:256], args.k)

    times: dict[str, list[float]] = {"ours": [], "faiss": []}
    cpu: dict[str, list[float]] = {"ours": [], "faiss": []}
    results: dict[str, Result] = {}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("faiss", flat)):
            elapsed, used, results[name] = timed(fn)
            times[name].append(elapsed)
            cpu[name].append(used)
    n_naive = min(args.naive_queries, args.queries)
    if not args.no_naive:
        elapsed, used, results["naive"] = timed(lambda: naive(queries[:n_naive], reference, args.k))
        times["naive cdist+topk"] = [elapsed]
        cpu["naive cdist+topk"] = [used]

    print(
        f"{args.queries} queries x {args.reference} reference x {args.dim}-d float32"
        f"{f' + {args.offset:g}' if args.offset else ''}, k={args.k}; {threads} threads "
        f"(torch {torch.__version__}, numpy {np.__version__}, faiss {faiss.__version__}); "
        f"ours on {args.device}"
    )
    sizes = {"ours": args.queries, "faiss": args.queries, "naive cdist+topk": n_naive}
    rates, cpu_rates = {}, {}
    for name, runs in times.items():
        median = statistics.median(runs)
        rates[name] = sizes[name] / median
        cpu_rates[name] = sizes[name] / max(statistics.median(cpu[name]), 1e-9)
        shown = ", ".join(f"{t:.2f}" for t in runs)
        print(
            f"{name:<17} {median:7.2f} s for {sizes[name]:>6} queries  "
            f"{rates[name]:7.0f} queries/s  (runs {shown} s; CPU median "
            f"{statistics.median(cpu[name]):.2f} s)"
        )
    same, diff = agreement(results["ours"], results["faiss"])
    print(f"ours vs faiss: identical index sets in {same:.4%} of rows, max |d| diff {diff:.2e}")
    if "naive" in results:
        ours_part = (results["ours"][0][:n_naive], results["ours"][1][:n_naive])
        same, diff = agreement(ours_part, results["naive"])
        print(f"ours vs naive: identical index sets in {same:.4%} of rows, max |d| diff {diff:.2e}")
    n_check = min(args.check_rows, args.queries)
    if n_check:
        truth = brute_force(queries[:n_check], reference, args.k)
        exact = {
            name: float((results[name][1][:n_check] == truth).all(axis=1).mean())
            for name in ("ours", "faiss")
        }
        print(
            f"equal to float64 brute force (indices, in order) on the first {n_check} rows: "
            f"ours {exact['ours']:.0%}, faiss {exact['faiss']:.0%}"
        )
    print(
        f"ratio faiss/ours time = {rates['ours'] / rates['faiss']:.2f}x "
        f"(above 1: ours faster; CPU seconds: {cpu_rates['ours'] / cpu_rates['faiss']:.2f}x)"
    )
    if "naive cdist+topk" in rates:
        naive_rate = rates["naive cdist+topk"]
        print(f"ratio naive/ours time per query = {rates['ours'] / naive_rate:.2f}x")


if __name__ == "__main__":
    main()
