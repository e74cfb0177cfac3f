"""Exact k-NN: our `ml.metrics.neighbours.knn` against faiss-cpu's IndexFlatL2, same run.

Random float32 vectors from a fixed seed (default 10,000 queries x 200,000 reference rows x
512 dimensions, k = 5, the size of the design notes). Timed on the same data in the same run,
alternating, `--repeats` times each, medians reported:

- ours: `knn(..., backend="torch")`, exact (float32 matrix-multiply pass with pruning, float64
  re-rank with ties to the smaller index), on `--device` (cpu or cuda);
- faiss: `faiss.IndexFlatL2` (exact, float32), always on the CPU, index built outside the
  timing (ours gets no such head start: its centring and norms are inside);
- naive (once, on the first `--naive-queries` queries, skip with --no-naive): per chunk of
  1,024 queries, `torch.cdist` against the whole reference and `topk`, a fresh distance
  matrix each time; compared by queries/s, as it runs on fewer queries.

Torch and faiss both get os.cpu_count() threads. Agreement: the share of query rows whose k
index sets are identical, and the largest distance difference.

    .venv/bin/python bench/knn.py
    .venv/bin/python bench/knn.py --queries 2000 --repeats 3 --device cuda
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

from ml.metrics.neighbours import knn  # noqa: E402

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


def timed(fn: Callable[[], Result]) -> tuple[float, Result]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def agreement(a: Result, b: Result) -> tuple[float, float]:
    """(share of rows with identical index sets, max |distance difference|)."""
    same = (np.sort(a[1], axis=1) == np.sort(b[1], axis=1)).all(axis=1).mean()
    return float(same), float(np.abs(a[0].astype(np.float64) - b[0]).max())


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

    rng = np.random.default_rng(args.seed)
    reference = rng.standard_normal((args.reference, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
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
    results: dict[str, Result] = {}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("faiss", flat)):
            elapsed, results[name] = timed(fn)
            times[name].append(elapsed)
    n_naive = min(args.naive_queries, args.queries)
    if not args.no_naive:
        elapsed, results["naive"] = timed(lambda: naive(queries[:n_naive], reference, args.k))
        times["naive cdist+topk"] = [elapsed]

    print(
        f"{args.queries} queries x {args.reference} reference x {args.dim}-d float32, "
        f"k={args.k}; {threads} threads (torch {torch.__version__}, faiss {faiss.__version__}); "
        f"ours on {args.device}"
    )
    sizes = {"ours": args.queries, "faiss": args.queries, "naive cdist+topk": n_naive}
    rates = {}
    for name, runs in times.items():
        median = statistics.median(runs)
        rates[name] = sizes[name] / median
        shown = ", ".join(f"{t:.2f}" for t in runs)
        print(
            f"{name:<17} {median:7.2f} s for {sizes[name]:>6} queries  "
            f"{rates[name]:7.0f} queries/s  (runs {shown} s)"
        )
    same, diff = agreement(results["ours"], results["faiss"])
    print(f"ours vs faiss: identical index sets in {same:.4%} of rows, max |d| diff {diff:.2e}")
    if "naive" in results:
        ours_part = (results["ours"][0][:n_naive], results["ours"][1][:n_naive])
        same, diff = agreement(ours_part, results["naive"])
        print(f"ours vs naive: identical index sets in {same:.4%} of rows, max |d| diff {diff:.2e}")
    print(f"ratio ours/faiss time = {rates['faiss'] / rates['ours']:.2f}")
    if "naive cdist+topk" in rates:
        naive_rate = rates["naive cdist+topk"]
        print(f"ratio ours/naive time per query = {naive_rate / rates['ours']:.2f}")


if __name__ == "__main__":
    main()
