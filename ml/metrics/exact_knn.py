"""Exact k nearest neighbours by Euclidean distance, in bounded memory (`knn`).

Exact means: equal to brute force in float64, sum((q - r)^2) per pair, ties going to the
smaller reference index. faiss's IndexFlatL2 and every BLAS-based search rank by the float32
expansion ||q||^2 + ||r||^2 - 2 q.r instead; far from the origin (e.g. images on a shared -1
background, features with a large mean) its cancellation returns wrong neighbours.

How it stays exact and fast (the matrix product is most of the time, as in faiss):

1. Candidates in float32, one matrix product per block of up to 4096 queries x 2048 reference
   rows, on the CPU through numpy's BLAS. The data are centred on the reference mean (no
   distance changes, the cancelling norms shrink) and the reference squared norm is an extra
   column, so each product entry is ||r||^2 - 2 q.r directly, with no pass to add norms.
2. Screening: one pass (`amin`) takes the minimum of every group of _GROUP columns; groups
   whose minimum exceeds a row's current kc-th candidate are dropped before anything else
   looks at them (on random data about 2% of the groups survive at 200k reference rows, 17%
   at 20k, the first block included). The rest is bookkeeping on a few thousand entries per
   block, run on one thread (`_one_thread`). Rows keep kc = k + _EXTRA_CANDIDATES candidates.
3. The candidates are re-ranked with float64 distances computed as brute force does.
4. A rigorous bound on the float32 round-off (Higham, ch. 3) says which rows could have lost a
   true neighbour among the rows left out; those get a range query (on random data: none).

bench/knn.py runs this and faiss's IndexFlatL2 on the same data in the same run and reports
the ratio, their agreement and both against float64 brute force.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

# Reference rows per block (kept in cache while query blocks stream past) and the most query
# rows per product; the (queries, reference) distance block is one reused buffer of at most
# 32 MiB. With 513 or 129 columns, 4096 x 2048 ran 10-25% more GFLOP per CPU-second than
# 2048 x 2048 (numpy's OpenBLAS, 2-core AMD EPYC).
DEFAULT_CHUNK_ROWS = 2048
_QUERY_BLOCK_ROWS = 4096
# Columns per screening group: small enough that few entries of a surviving group are looked
# at, large enough that the per-group minima stay a small array.
_GROUP = 64
# Candidates kept beyond k, so that float32 round-off rarely forces the range query.
_EXTRA_CANDIDATES = 3
# Above this share of surviving groups a block is merged with one dense top-k instead.
_DENSE_SHARE = 0.25
# Elements of the float64 (rows, candidates, d) re-ranking temporary: small enough to stay in
# cache and in malloc's reused memory (large blocks cost page faults: measured 10x slower).
_RERANK_ELEMENTS = 2**17
# float32 unit round-off.
_U32 = 2.0**-24


def as_matrix(x: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    """2-D float32 or float64 array (other dtypes -> float64), C-contiguous."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (rows, dim) array, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def check_finite(x: np.ndarray, what: str) -> None:
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinity")


def knn(
    queries: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray,
    k: int,
    *,
    device: str | torch.device = "cpu",
    chunk_rows: int | None = None,
    backend: str = "torch",
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest reference rows of every query row, by Euclidean distance.

    Returns (distances (Q, k) float32, ascending; indices (Q, k) int64 into `reference`).
    backend "torch" (default) is exact: it equals brute-force numpy in float64 with ties broken
    by the smaller index; `chunk_rows` reference rows are compared per block (default
    DEFAULT_CHUNK_ROWS), on `device`. backend "faiss" runs faiss's IndexFlatL2 on the CPU
    (optional package faiss-cpu): float32 arithmetic, ties in any order, and wrong neighbours
    for data far from the origin; it is there for comparison, not as the default.
    """
    q = as_matrix(queries, "queries")
    r = as_matrix(reference, "reference")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    if k > r.shape[0]:
        raise ValueError(f"k = {k} exceeds the {r.shape[0]} reference rows")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dimensions but the reference has {r.shape[1]}")
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    if backend == "faiss":
        return _faiss_knn(q, r, k)
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' or 'faiss', not {backend!r}")
    if q.shape[0] == 0:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    check_finite(q, "queries")
    return _ExactSearch(q, r, k, torch.device(device), chunk_rows or DEFAULT_CHUNK_ROWS).run()


def _faiss_knn(q: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        import faiss  # optional: only this backend needs it
    except ImportError as err:
        raise ImportError(
            "knn(backend='faiss') needs the optional package faiss-cpu (pip install faiss-cpu); "
            "backend='torch' needs nothing extra and is exact"
        ) from err
    if q.shape[0] == 0:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    index = faiss.IndexFlatL2(r.shape[1])
    index.add(np.ascontiguousarray(r, dtype=np.float32))
    squared, indices = index.search(np.ascontiguousarray(q, dtype=np.float32), k)
    # Squared distances from ||q||^2 + ||r||^2 - 2 q.r can dip below 0 by round-off.
    return np.sqrt(np.maximum(squared, 0.0)).astype(np.float32), indices.astype(np.int64)


def _matmul_input_roundoff(device: torch.device) -> float:
    """Unit round-off of the inputs of float32 matrix products on `device`: 0 for true float32;
    TF32 (2^-11) or bfloat16 (2^-8) when a user enabled those globally for speed. The error
    bound widens accordingly, so results stay exact (only more rows need the range query)."""
    cuda = device.type == "cuda"
    backend = torch.backends.cuda.matmul if cuda else torch.backends.mkldnn.matmul
    flag = getattr(backend, "fp32_precision", "none")
    precision = torch.get_float32_matmul_precision()
    if precision == "medium" or flag == "bf16":
        return 2.0**-8
    if precision == "high" or flag == "tf32" or (cuda and torch.backends.cuda.matmul.allow_tf32):
        return 2.0**-11
    return 0.0


class _ExactSearch:
    """One exact search: float32 candidate pass, float64 re-rank, range query where needed."""

    def __init__(
        self, q: np.ndarray, r: np.ndarray, k: int, device: torch.device, chunk_rows: int
    ) -> None:
        self.q, self.r, self.k, self.device = q, r, k, device
        self.n_ref, self.dim = r.shape
        self.kc = min(k + _EXTRA_CANDIDATES, self.n_ref)
        self.chunk = min(chunk_rows, self.n_ref)
        self.group = min(_GROUP, self.chunk)
        self.width = math.ceil(self.chunk / self.group) * self.group
        self.source = torch.from_numpy(r).to(device)
        self.max_ref_sq = torch.zeros((), dtype=torch.float64, device=device)
        with _one_thread(device):
            # Centring on the reference mean changes no distance but shrinks the norms that
            # ||q||^2 + ||r||^2 - 2 q.r cancels. Any shift cancels exactly in q - r, so a
            # float32 mean is precise enough.
            self.shift = self.source.mean(dim=0, dtype=torch.float32)
            # Subtracting in the input's precision into float32 rounds once, relative to the
            # centred value (`_bound` relies on this); so does `_chunks` for the reference.
            qc = torch.empty(q.shape, device=device)
            torch.sub(torch.from_numpy(q).to(device), self.shift, out=qc)
            q_norm = torch.linalg.vector_norm(qc, dim=1, dtype=torch.float64)
            self.q_sq = q_norm.square_().cpu().numpy()  # float64 ||q_c||^2
            # [-2 q_c, 1] against [r_c, ||r_c||^2]: the product is ||r_c||^2 - 2 q_c.r_c.
            self.q_aug = torch.empty((q.shape[0], self.dim + 1), device=device)
            torch.mul(qc, -2.0, out=self.q_aug[:, : self.dim])  # exact: a power of two
            self.q_aug[:, self.dim] = 1.0

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        approx_kth, cand = self._candidate_pass()
        max_ref_sq = float(self.max_ref_sq)
        if not math.isfinite(max_ref_sq):  # NaN propagates through the running maximum
            raise ValueError("reference contain NaN or infinity (or values beyond float32)")
        d2, idx = self._rerank(cand)
        if self.kc < self.n_ref:
            # A reference row left out has approx >= the row's last kept value; with round-off
            # <= bound it can only tie or beat the k-th exact distance if approx_kth + |q|^2
            # - bound does not exceed it. Those rows get a range query.
            bound = self._bound(math.sqrt(max_ref_sq))
            unsure = np.flatnonzero(approx_kth + self.q_sq - bound <= d2[:, -1])
            for s in range(0, unsure.size, _QUERY_BLOCK_ROWS):
                rows = unsure[s : s + _QUERY_BLOCK_ROWS]
                limit = d2[rows, -1] - self.q_sq[rows] + bound[rows]
                d2[rows], idx[rows] = self._range_query(rows, limit)
        return np.sqrt(d2).astype(np.float32), idx

    # -- float32 pass -------------------------------------------------------------------------

    def _chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (start, [r_c, ||r_c||^2] rows) for consecutive reference rows, padded to whole
        groups with rows whose product is +inf (never a candidate); one buffer is reused."""
        dev, d = self.device, self.dim
        ref = torch.empty((self.width, d + 1), device=dev)
        sq = torch.empty(self.width, device=dev)
        for start in range(0, self.n_ref, self.chunk):
            n = min(self.chunk, self.n_ref - start)
            width = math.ceil(n / self.group) * self.group
            with _one_thread(dev):
                torch.sub(self.source[start : start + n], self.shift, out=ref[:n, :d])
                # In float32 (in float64 it took 19x as long), within the bound of `_bound`.
                torch.linalg.vector_norm(ref[:n, :d], dim=1, out=sq[:n])
                sq[:n].square_()
                ref[:n, d] = sq[:n]
                torch.maximum(self.max_ref_sq, sq[:n].max().double(), out=self.max_ref_sq)
                if width > n:
                    ref[n:width, :d] = 0.0
                    ref[n:width, d] = math.inf  # 1 * inf + sum(0 * q) = inf
            yield start, ref[:width]

    def _candidate_pass(self) -> tuple[np.ndarray, np.ndarray]:
        n_q, dev = self.q_aug.shape[0], self.device
        best_v = torch.full((n_q, self.kc), math.inf, device=dev)
        best_i = torch.full((n_q, self.kc), self.n_ref, dtype=torch.int64, device=dev)
        q_rows = math.ceil(n_q / math.ceil(n_q / _QUERY_BLOCK_ROWS))  # equal blocks
        # One buffer for every block: fresh (rows, width) allocations cost page faults.
        dist_buf = torch.empty(q_rows * self.width, device=dev)
        for start, ref in self._chunks():
            for q0 in range(0, n_q, q_rows):
                rows = min(q_rows, n_q - q0)
                block = dist_buf[: rows * ref.shape[0]].view(rows, ref.shape[0])
                _product(self.q_aug[q0 : q0 + rows], ref, block)  # ||r||^2 - 2 q.r
                with _one_thread(dev):
                    self._merge(block, start, best_v[q0 : q0 + rows], best_i[q0 : q0 + rows])
        found = best_i.clamp_(max=self.n_ref - 1)
        return best_v[:, -1].double().cpu().numpy(), found.cpu().numpy()

    def _merge(
        self, block: torch.Tensor, start: int, best_v: torch.Tensor, best_i: torch.Tensor
    ) -> None:
        """Fold one block of ||r||^2 - 2 q.r into the rows' running candidates, in place.

        Per row a threshold t is taken such that the row's kc-th candidate after the merge is
        <= t; only entries <= t are looked at, so every entry left out is >= the row's final
        kc-th value (what `run`'s error-bound check relies on). t is the current kc-th
        candidate, or, if lower, the kc-th smallest group minimum of this block (kc groups
        each hold an entry <= it): that makes the first block cheap too."""
        rows, width = block.shape
        n_grp = width // self.group
        groups = block.view(rows, n_grp, self.group)
        lowest = groups.amin(dim=2)  # the one pass over every entry besides the product
        limit = best_v[:, -1:]
        live = lowest <= limit
        many = int(live.sum()) > _DENSE_SHARE * live.numel()
        if many and n_grp >= self.kc:
            limit = torch.minimum(limit, lowest.kthvalue(self.kc, dim=1, keepdim=True).values)
            live = torch.le(lowest, limit, out=live)
            many = int(live.sum()) > _DENSE_SHARE * live.numel()
        if many:  # e.g. heavily tied data: one dense top-k is cheaper
            vals, cols = block.topk(min(self.kc, width), dim=1, largest=False, sorted=False)
            self._fold(best_v, best_i, vals, cols + start)
            return
        row_ids, grp_ids = torch.nonzero(live, as_tuple=True)
        if row_ids.numel() == 0:
            return
        picked = groups.reshape(rows * n_grp, self.group)[row_ids * n_grp + grp_ids]
        pair, col = torch.nonzero(picked <= limit[row_ids], as_tuple=True)
        hit_rows = row_ids[pair]  # ascending: nonzero walks row-major
        vals = picked[pair, col]
        cols = grp_ids[pair] * self.group + col + start
        present, pad_v, pad_i = _side_by_side(hit_rows, vals, cols)
        some_v, some_i = best_v[present], best_i[present]
        self._fold(some_v, some_i, pad_v, pad_i)
        best_v[present], best_i[present] = some_v, some_i

    def _fold(
        self, best_v: torch.Tensor, best_i: torch.Tensor, vals: torch.Tensor, cols: torch.Tensor
    ) -> None:
        """best <- the kc smallest of best and (vals, cols), row by row, in place."""
        all_v = torch.cat([best_v, vals], dim=1)
        all_i = torch.cat([best_i, cols], dim=1)
        top_v, pos = all_v.topk(self.kc, dim=1, largest=False, sorted=True)
        best_v.copy_(top_v)
        best_i.copy_(all_i.gather(1, pos))

    # -- float64 re-rank and fallback ---------------------------------------------------------

    def _bound(self, max_ref_norm: float) -> np.ndarray:
        """Bound on the float32 error of (||r||^2 - 2 q.r) + ||q||^2 against the exact squared
        distance of the original rows, per query (Higham, Accuracy and Stability of Numerical
        Algorithms, ch. 3).

        Centring rounds each coordinate once (relative u: <= 2u (|q| + |r|)^2 on the squared
        distance); the float32 ||r||^2 (a sum of d squares, a square root, a square) is off by
        <= gamma_{d+3} |r|^2; the product's d + 1 terms carry gamma_{d+1} relative to
        2 sum |q_i r_i| + |r|^2 <= (|q| + |r|)^2; ||q||^2 is float64. So 2 gamma_{d+3} + 3u
        times (|q| + max |r|)^2 bounds it; we take 4 gamma_{d+4} + 8u, plus 5 u_in for TF32 /
        bf16 inputs.
        """
        n = self.dim + 4
        gamma = n * _U32 / (1.0 - n * _U32)
        rel = 4.0 * (gamma + 2.0 * _U32) + 5.0 * _matmul_input_roundoff(self.device)
        return rel * (np.sqrt(self.q_sq) + max_ref_norm) ** 2

    def _exact_sq(self, q_rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Float64 squared distances sum((q - r)^2) of q_rows (m,) against cand (m, c),
        summed exactly like numpy's brute force (so equal values tie equally)."""
        diff = np.subtract(self.q[q_rows][:, None, :], self.r[cand], dtype=np.float64)
        return np.square(diff, out=diff).sum(axis=-1)

    def _rerank(self, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_q = cand.shape[0]
        d2 = np.empty((n_q, self.k))
        idx = np.empty((n_q, self.k), dtype=np.int64)
        step = max(1, _RERANK_ELEMENTS // (self.kc * self.dim))
        for s in range(0, n_q, step):
            c = cand[s : s + step]
            exact = self._exact_sq(np.arange(s, s + c.shape[0]), c)
            order = np.lexsort((c, exact), axis=-1)[:, : self.k]  # distance, then index
            d2[s : s + step] = np.take_along_axis(exact, order, axis=1)
            idx[s : s + step] = np.take_along_axis(c, order, axis=1)
        return d2, idx

    def _range_query(self, rows: np.ndarray, limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of `rows` from every reference row whose float32 value is <= limit.

        limit = (k-th exact squared distance so far) - |q|^2 + bound, so every row that could
        tie or beat it is in range; they are few unless the data has many near-duplicates.
        """
        n, k = rows.size, self.k
        best_d2 = np.full((n, k), np.inf)
        best_idx = np.full((n, k), self.n_ref, dtype=np.int64)
        q_aug = self.q_aug[torch.from_numpy(rows).to(self.device)]
        lim = torch.from_numpy(limit).to(self.device)
        for start, ref in self._chunks():
            approx = _product(q_aug, ref, torch.empty((n, ref.shape[0]), device=self.device))
            hit_row, hit_col = torch.nonzero(approx.double() <= lim[:, None], as_tuple=True)
            if hit_row.numel() == 0:
                continue
            hit_row = hit_row.cpu().numpy()
            hit_idx = (hit_col + start).cpu().numpy()
            exact = np.empty(hit_row.size)
            step = max(1, _RERANK_ELEMENTS // self.dim)
            for s in range(0, hit_row.size, step):
                pairs = slice(s, s + step)
                exact[pairs] = self._exact_sq(rows[hit_row[pairs]], hit_idx[pairs, None])[:, 0]
            best_d2, best_idx = _merge_flat(best_d2, best_idx, hit_row, exact, hit_idx)
        return best_d2, best_idx


def _product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = a @ b.T in float32. On the CPU through numpy's BLAS (OpenBLAS in numpy's wheels),
    which on the shared 2-core AMD EPYC here did more GFLOP per CPU-second on these shapes
    than torch's MKL (bench/knn.py --gemm)."""
    if a.device.type == "cpu":
        np.matmul(a.numpy(), b.numpy().T, out=out.numpy())
        return out
    return torch.mm(a, b.T, out=out)


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run everything but the matrix products on one CPU thread.

    Those operations are memory-bound and small next to the product, and torch's thread pool
    waits at every operation for all its threads: on a busy machine one descheduled thread
    stalls each of them for milliseconds (measured on 2 shared cores: a 3,000-row gather took
    24 ms with 2 threads, 1 ms with one). The products keep every thread. The setting is
    process-wide, so it is restored on the way out, exceptions included."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _side_by_side(
    row_ids: torch.Tensor, vals: torch.Tensor, cols: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay the flat hits of each row (row_ids ascending) side by side, padded with +inf:
    (rows present, (n, most hits) values, (n, most hits) columns)."""
    # Not repeat_interleave: on the busy 2-core CPU here it took 15-55 ms for a few hundred.
    dev, n = row_ids.device, row_ids.numel()
    new_row = torch.ones(n, dtype=torch.bool, device=dev)
    torch.ne(row_ids[1:], row_ids[:-1], out=new_row[1:])
    first = torch.nonzero(new_row).squeeze(1)  # where each row's hits start
    compact = torch.cumsum(new_row, 0) - 1  # 0, 0, 1, 1, 1, 2, ...: which row
    slot = torch.arange(n, device=dev) - first[compact]  # position within the row
    present = row_ids[first]
    width = int(slot.max()) + 1
    pad_v = torch.full((present.numel(), width), math.inf, device=dev)
    pad_i = torch.full((present.numel(), width), -1, dtype=torch.int64, device=dev)
    pad_v[compact, slot] = vals
    pad_i[compact, slot] = cols
    return present, pad_v, pad_i


def _merge_flat(
    best_d2: np.ndarray, best_idx: np.ndarray, rows: np.ndarray, d2: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row k smallest of (best_d2, best_idx) and the flat (rows, d2, idx) hits, ties to
    the smaller index."""
    n, k = best_d2.shape
    all_rows = np.concatenate([np.repeat(np.arange(n), k), rows])
    all_d2 = np.concatenate([best_d2.ravel(), d2])
    all_idx = np.concatenate([best_idx.ravel(), idx])
    order = np.lexsort((all_idx, all_d2, all_rows))
    sorted_rows = all_rows[order]
    rank = np.arange(order.size) - np.searchsorted(sorted_rows, sorted_rows, side="left")
    keep = order[rank < k]  # every row has its k previous entries, so exactly k each
    return all_d2[keep].reshape(n, k), all_idx[keep].reshape(n, k)
