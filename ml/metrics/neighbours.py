"""Exact nearest neighbours, and a memorisation check of synthetic images against training.

A generator that memorises reproduces (near-)copies of training images, which for medical data
can leak a patient. The check measures, for every synthetic image, its distance to the closest
real TRAINING image (DCR, "distance to closest record") and the ratio of its first to its
second neighbour distance (NNDR; a copy of one training image sits much closer to it than to
anything else, so NNDR is near 0).

Why the baseline is real test vs real train: a held-out real test image is a new patient the
generator never saw, so its DCR to the training set is "how close a new patient comes to a
training image by chance" under this acquisition protocol, anatomy and feature space. Raw DCRs
have no meaning across data sets (pixel distances depend on resolution, contrast, background);
against this baseline they do. The percentile rule: level "p5" takes the 5th percentile of the
baseline DCRs as threshold, and a synthetic image closer to a training image than that is
flagged as likely memorised: it is closer than 95% of genuinely new real images come. A
generator that only learned the distribution gets about 5% of its images flagged at "p5" (1% at
"p1") by chance; a markedly larger share is evidence of copying. `release_verdict` turns the
share into a pass / fail gate a web app can apply to the stored `summary()`.

The baseline needs test images: with fewer than ~20 of them the 1st and 5th percentiles are the
smallest one or two baseline distances (or interpolations between them), so thresholds are
coarse; `summary()` says so (`baseline_n`, `coarse_baseline`). If real test images are
themselves copies of training images (the same image in both splits), baseline DCRs of 0 drag
the thresholds to 0 and nothing can be flagged: `summary()` counts them (`baseline_zero_dcr`).

Distances are Euclidean, in pixel space (`pixel_features`) or in any feature space the caller
computed (e.g. `ml.metrics.features`), named by `space`.

`knn` is exact: a float32 matrix-multiply pass (||r||^2 - 2 q.r on mean-centred data, the
reference visited in order of increasing norm, buffers reused, sub-blocks that cannot beat a
row's current candidates skipped before any top-k) keeps a few more candidates than asked for;
those are re-ranked with float64 distances computed as sum((q - r)^2), exactly as brute-force
numpy does, ties going to the smaller index; rows where float32 round-off could have dropped a
true neighbour (a rigorous error bound says when) are searched again with a range query. So
results equal brute force, not just approximately. On 2 CPU cores it runs 10k x 200k x 512-d,
k = 5 in about the time of faiss's IndexFlatL2 (bench/knn.py); the matrix product is >80% of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# Reference rows per chunk of the float32 pass, and query rows per distance block. On a 2-core
# AVX-512 CPU with 512-d data, blocks from 1024 x 4096 to 4096 x 4096 ran within a few percent
# of each other (bench/knn.py); 2048 x 2048 keeps the reused buffer at 16 MiB.
DEFAULT_CHUNK_ROWS = 2048
_QUERY_BLOCK_ROWS = 2048
# Columns per pruning sub-block: its minimum is compared with the row's current candidates.
_SUB_BLOCK = 256
# Candidates kept beyond k, so that round-off rarely forces the range-query fallback.
_EXTRA_CANDIDATES = 8
# Elements of the float64 (rows, candidates, d) re-ranking temporary: small enough to stay in
# cache and in malloc's reused memory (large blocks cost page faults: measured 10x slower).
_RERANK_ELEMENTS = 2**17
# float32 unit round-off.
_U32 = 2.0**-24

COARSE_BASELINE_BELOW = 20


# --------------------------------------------------------------------------------------------
# Features and input checks


def pixel_features(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, R, R) images in [-1, 1] -> (N, C*R*R) float32 vectors, one per image."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim < 2:
        raise ValueError(f"expected a batch of images (N, C, R, R), got shape {arr.shape}")
    size = math.prod(arr.shape[1:])  # not -1: that cannot be inferred for N = 0
    return np.ascontiguousarray(arr.reshape(arr.shape[0], size), dtype=np.float32)


def _as_matrix(x: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    """2-D float32 or float64 array (other dtypes -> float64), finite, C-contiguous."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (rows, dim) array, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def _check_finite(x: np.ndarray, what: str) -> None:
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinity")


# --------------------------------------------------------------------------------------------
# Exact k-NN


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
    DEFAULT_CHUNK_ROWS), on `device`. backend "faiss" runs faiss's exact IndexFlatL2 on the
    CPU (optional package faiss-cpu): float32 arithmetic, ties in any order.
    """
    q = _as_matrix(queries, "queries")
    r = _as_matrix(reference, "reference")
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
    _check_finite(q, "queries")
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
    """One exact search: float32 candidate pass, float64 re-rank, range query where needed.

    The reference is visited in order of increasing (centred) norm: then each sub-block's
    smallest ||r||^2 is its first, so min over a sub-block of (-2 q.r) plus that norm is a
    lower bound for the whole sub-block, taken straight off the matrix product. Sub-blocks
    that cannot beat a row's candidates are skipped before norms are added or top-k is run,
    and the small norms come first, so candidates get good early and most later sub-blocks
    are skipped. The only pass over every distance is one amin next to the GEMM.
    """

    def __init__(
        self, q: np.ndarray, r: np.ndarray, k: int, device: torch.device, chunk_rows: int
    ) -> None:
        self.q, self.r, self.k, self.device = q, r, k, device
        self.n_ref, self.dim = r.shape
        # Extra candidates make the float32 ranking's round-off harmless in nearly all rows.
        self.kc = min(k + _EXTRA_CANDIDATES, self.n_ref)
        self.chunk = min(chunk_rows, self.n_ref)
        self.sub = min(_SUB_BLOCK, self.chunk)
        self.width = math.ceil(self.chunk / self.sub) * self.sub
        self.source = torch.from_numpy(r).to(device)
        # Centring on the reference mean changes no distance but shrinks the norms that
        # ||q||^2 + ||r||^2 - 2 q.r cancels, e.g. for images on a shared -1 background.
        # Any shift cancels exactly in q - r, so a float32 mean is precise enough (and fast).
        self.shift = self.source.mean(dim=0, dtype=torch.float32)
        qc = self._centred(torch.from_numpy(q).to(device))
        self.q_sq = qc.double().square().sum(dim=1).cpu().numpy()  # float64 ||q_c||^2
        self.q_m2 = qc * -2.0  # exact: a power of two
        self.ref_sq, self.order = self._sorted_norms()
        self.max_ref_norm = float(self.ref_sq[-1].sqrt())

    def _centred(self, x: torch.Tensor) -> torch.Tensor:
        """x - shift in the input's precision, then float32: one rounding, relative to the
        centred value (the error bound in `_bound` relies on this)."""
        return (x - self.shift.to(x.dtype)).float()

    def _sorted_norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred squared norms of the reference in ascending order, and that order."""
        sq = torch.empty(self.n_ref, device=self.device)
        for start in range(0, self.n_ref, self.chunk):
            chunk = self._centred(self.source[start : start + self.chunk])
            torch.linalg.vector_norm(chunk, dim=1, out=sq[start : start + self.chunk])
        sq.square_()
        if not torch.isfinite(sq).all():
            raise ValueError("reference contain NaN or infinity (or values beyond float32)")
        sq, order = torch.sort(sq)
        return sq, order

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        approx_kth, cand = self._candidate_pass()
        d2, idx = self._rerank(cand)
        if self.kc < self.n_ref:
            # A reference row left out has approx >= the row's last kept value; with round-off
            # <= bound it can only tie or beat the k-th exact distance if approx_kth + |q|^2
            # - bound does not exceed it. Those rows get a range query.
            bound = self._bound()
            unsure = np.flatnonzero(approx_kth + self.q_sq - bound <= d2[:, -1])
            for s in range(0, unsure.size, _QUERY_BLOCK_ROWS):
                rows = unsure[s : s + _QUERY_BLOCK_ROWS]
                limit = d2[rows, -1] - self.q_sq[rows] + bound[rows]
                d2[rows], idx[rows] = self._range_query(rows, limit)
        return np.sqrt(d2).astype(np.float32), idx

    # -- float32 pass -------------------------------------------------------------------------

    def _chunks(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield (start, centred reference rows, their squared norms) in sorted order, padded
        to whole sub-blocks with zero rows of infinite norm; buffers are reused."""
        dev = self.device
        gathered = torch.empty((self.width, self.dim), dtype=self.source.dtype, device=dev)
        ref = torch.zeros((self.width, self.dim), device=dev)
        sq = torch.empty(self.width, device=dev)
        for start in range(0, self.n_ref, self.chunk):
            n = min(self.chunk, self.n_ref - start)
            width = math.ceil(n / self.sub) * self.sub
            torch.index_select(self.source, 0, self.order[start : start + n], out=gathered[:n])
            ref[:n].copy_(self._centred(gathered[:n]))
            ref[n:width].zero_()
            sq[:n].copy_(self.ref_sq[start : start + n])
            sq[n:width] = math.inf  # padding never becomes a candidate
            yield start, ref[:width], sq[:width]

    def _candidate_pass(self) -> tuple[np.ndarray, np.ndarray]:
        n_q, dev = self.q_m2.shape[0], self.device
        best_v = torch.full((n_q, self.kc), math.inf, device=dev)
        best_i = torch.full((n_q, self.kc), self.n_ref, dtype=torch.int64, device=dev)
        q_rows = min(n_q, _QUERY_BLOCK_ROWS)
        # One buffer for every block: fresh (rows, width) allocations cost page faults.
        dist_buf = torch.empty(q_rows * self.width, device=dev)
        for start, ref, sq in self._chunks():
            lowest = sq[:: self.sub]  # ascending norms: each sub-block's smallest is its first
            for q0 in range(0, n_q, q_rows):
                rows = min(q_rows, n_q - q0)
                block = dist_buf[: rows * ref.shape[0]].view(rows, ref.shape[0])
                torch.mm(self.q_m2[q0 : q0 + rows], ref.T, out=block)  # -2 q.r
                self._merge(
                    block, sq, lowest, start, best_v[q0 : q0 + rows], best_i[q0 : q0 + rows]
                )
        # Candidates are positions in norm order: map them back to reference rows.
        found = self.order[best_i.clamp_(max=self.n_ref - 1)]
        return best_v[:, -1].double().cpu().numpy(), found.cpu().numpy()

    def _merge(
        self,
        block: torch.Tensor,
        sq: torch.Tensor,
        lowest: torch.Tensor,
        start: int,
        best_v: torch.Tensor,
        best_i: torch.Tensor,
    ) -> None:
        """Fold one block of -2 q.r into the rows' running candidates, in place."""
        rows, width = block.shape
        n_sub = width // self.sub
        subs = block.view(rows, n_sub, self.sub)
        bound = subs.amin(dim=2).add_(lowest)  # <= every ||r||^2 - 2 q.r in the sub-block
        active = bound < best_v[:, -1:]
        n_active = int(active.sum())
        if n_active == 0:
            return
        if n_active * 2 > active.numel():
            # Early chunks, where most sub-blocks are live: one dense top-k is cheaper than
            # gathering sub-blocks.
            block += sq
            vals, cols = block.topk(min(self.kc, width), dim=1, largest=False, sorted=False)
            self._fold(best_v, best_i, vals, cols + start)
            return
        row_ids, sub_ids = torch.nonzero(active, as_tuple=True)
        picked = subs.reshape(rows * n_sub, self.sub)[row_ids * n_sub + sub_ids]
        picked += sq.view(n_sub, self.sub)[sub_ids]  # now ||r||^2 - 2 q.r
        vals, cols = picked.topk(min(self.kc, self.sub), dim=1, largest=False, sorted=False)
        cols += (sub_ids * self.sub + start).unsqueeze(1)
        uniq, pad_v, pad_i = _side_by_side(row_ids, vals, cols)
        some_v, some_i = best_v[uniq], best_i[uniq]
        self._fold(some_v, some_i, pad_v, pad_i)
        best_v[uniq], best_i[uniq] = some_v, some_i

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

    def _bound(self) -> np.ndarray:
        """Bound on the float32 error of ||r||^2 - 2 q.r + ||q||^2 against the exact squared
        distance, per query (Higham, Accuracy and Stability of Numerical Algorithms, ch. 3).

        Centring rounds each coordinate once (relative u: <= 2u (|q| + |r|)^2 on the squared
        distance); the dot product and the norm carry gamma_d = d u / (1 - d u) relative to
        sum |q_i r_i| <= |q| |r| and |r|^2, a few more roundings add 4u. So gamma_d + 6u times
        (|q| + max |r|)^2 bounds it; we take 4 gamma_{d+4} + 8u, plus 5 u_in for TF32 / bf16.
        """
        n = self.dim + 4
        gamma = n * _U32 / (1.0 - n * _U32)
        rel = 4.0 * (gamma + 2.0 * _U32) + 5.0 * _matmul_input_roundoff(self.device)
        return rel * (np.sqrt(self.q_sq) + self.max_ref_norm) ** 2

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
        q_m2 = self.q_m2[torch.from_numpy(rows).to(self.device)]
        lim = torch.from_numpy(limit).to(self.device)
        for start, ref, sq in self._chunks():
            approx = torch.mm(q_m2, ref.T).add_(sq)
            hit_row, hit_col = torch.nonzero(approx.double() <= lim[:, None], as_tuple=True)
            if hit_row.numel() == 0:
                continue
            hit_row = hit_row.cpu().numpy()
            hit_idx = self.order[hit_col + start].cpu().numpy()
            exact = np.empty(hit_row.size)
            step = max(1, _RERANK_ELEMENTS // self.dim)
            for s in range(0, hit_row.size, step):
                pairs = slice(s, s + step)
                exact[pairs] = self._exact_sq(rows[hit_row[pairs]], hit_idx[pairs, None])[:, 0]
            best_d2, best_idx = _merge_flat(best_d2, best_idx, hit_row, exact, hit_idx)
        return best_d2, best_idx


def _side_by_side(
    row_ids: torch.Tensor, vals: torch.Tensor, cols: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay the candidate lists of each row (row_ids ascending) side by side, padded with +inf:
    (rows present, (n, lists * c) values, (n, lists * c) columns)."""
    dev, c = row_ids.device, vals.shape[1]
    uniq, counts = torch.unique_consecutive(row_ids, return_counts=True)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    slot = torch.arange(row_ids.numel(), device=dev) - first
    compact = torch.repeat_interleave(torch.arange(uniq.numel(), device=dev), counts)
    spread = slot.unsqueeze(1) * c + torch.arange(c, device=dev)
    width = int(counts.max()) * c
    pad_v = torch.full((uniq.numel(), width), math.inf, device=dev)
    pad_i = torch.full((uniq.numel(), width), -1, dtype=torch.int64, device=dev)
    pad_v[compact.unsqueeze(1), spread] = vals
    pad_i[compact.unsqueeze(1), spread] = cols
    return uniq, pad_v, pad_i


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


# --------------------------------------------------------------------------------------------
# Memorisation


def _level_name(percentile: float) -> str:
    return f"p{percentile:g}"


def _stat(values: np.ndarray, fn: Callable[[np.ndarray], Any]) -> float | None:
    """A JSON-safe statistic: None for an empty array."""
    return float(fn(values)) if values.size else None


def _nndr(distances: np.ndarray) -> np.ndarray:
    """d1 / d2 per row; 1.0 where both are 0 (a point among identical copies is not special)."""
    d1, d2 = distances[:, 0].astype(np.float64), distances[:, 1].astype(np.float64)
    ratio = np.ones_like(d1)
    np.divide(d1, d2, out=ratio, where=d2 > 0)
    return ratio


@dataclass(frozen=True)
class MemorisationReport:
    """Distances of synthetic images to real training images, judged against real test ones.

    `dcr` / `nndr`: per synthetic image; `baseline_dcr` / `baseline_nndr`: per real test image
    (the chance level); `thresholds[level]`: that percentile of `baseline_dcr`;
    `flagged[level]`: synthetic images closer to a training image than the threshold.
    """

    k: int
    space: str
    dcr: np.ndarray
    nndr: np.ndarray
    neighbour_indices: np.ndarray
    neighbour_distances: np.ndarray
    baseline_dcr: np.ndarray
    baseline_nndr: np.ndarray
    thresholds: dict[str, float]
    flagged: dict[str, np.ndarray]
    n_train: int = 0
    percentiles: dict[str, float] = field(default_factory=dict)

    def _level(self, level: str | None) -> str:
        if level is None:  # the most permissive threshold catches the most suspects
            return max(self.thresholds, key=lambda name: self.percentiles.get(name, 0.0))
        if level not in self.thresholds:
            raise ValueError(f"unknown level {level!r}; have {sorted(self.thresholds)}")
        return level

    def share_flagged(self, level: str = "p5") -> float:
        """Share of synthetic images flagged at `level` (0.0 for an empty synthetic set)."""
        flags = self.flagged[self._level(level)]
        return float(flags.mean()) if flags.size else 0.0

    def risk_order(self, level: str | None = None) -> np.ndarray:
        """Synthetic indices, most suspicious first: smallest dcr / threshold (at `level`,
        default the highest percentile), then smallest nndr, then index."""
        threshold = self.thresholds[self._level(level)]
        ratio = self.dcr.astype(np.float64)
        if threshold > 0:  # a zero threshold (split leak) leaves the order by dcr alone
            ratio /= threshold
        return np.lexsort((np.arange(self.dcr.size), self.nndr, ratio))

    def summary(self) -> dict:
        """JSON-safe numbers for storage and `release_verdict`."""
        n_test = int(self.baseline_dcr.size)
        return {
            "k": self.k,
            "space": self.space,
            "n_synthetic": int(self.dcr.size),
            "n_train": self.n_train,
            "n_test": n_test,
            "baseline_n": n_test,
            "coarse_baseline": n_test < COARSE_BASELINE_BELOW,
            "baseline_zero_dcr": int(np.count_nonzero(self.baseline_dcr == 0)),
            "percentiles": dict(self.percentiles),
            "thresholds": {name: float(value) for name, value in self.thresholds.items()},
            "share_flagged": {name: self.share_flagged(name) for name in self.thresholds},
            "n_flagged": {name: int(flags.sum()) for name, flags in self.flagged.items()},
            "dcr": {"median": _stat(self.dcr, np.median), "min": _stat(self.dcr, np.min)},
            "baseline_dcr": {
                "median": _stat(self.baseline_dcr, np.median),
                "min": _stat(self.baseline_dcr, np.min),
            },
            "nndr": {"median": _stat(self.nndr, np.median)},
            "baseline_nndr": {"median": _stat(self.baseline_nndr, np.median)},
        }


def _vectors(x: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    """Images (N, C, R, R) become pixel vectors; 2-D input is taken as features already."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    vectors = pixel_features(arr) if arr.ndim > 2 else _as_matrix(arr, what)
    _check_finite(vectors, what)
    return vectors


def memorisation_report(
    synthetic: torch.Tensor | np.ndarray,
    train: torch.Tensor | np.ndarray,
    test: torch.Tensor | np.ndarray,
    *,
    k: int = 5,
    percentiles: tuple[float, ...] = (1.0, 5.0),
    space: str = "pixel",
    device: str | torch.device = "cpu",
) -> MemorisationReport:
    """DCR / NNDR of synthetic images to the real training set, against the real test set.

    Inputs are images (N, C, R, R) in [-1, 1], compared as pixel vectors, or (N, d) features
    of one feature space (name it in `space`). `k` >= 2 neighbours are kept (NNDR needs two).
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"k must be an integer >= 2 (NNDR needs two neighbours), got {k!r}")
    levels = {_level_name(float(p)): float(p) for p in percentiles}
    if not levels or any(not 0.0 < p < 100.0 for p in levels.values()):
        raise ValueError(f"percentiles must lie strictly between 0 and 100, got {percentiles}")
    syn, tr, te = _vectors(synthetic, "synthetic"), _vectors(train, "train"), _vectors(test, "test")
    if te.shape[0] == 0:
        raise ValueError("the baseline needs at least one real test image")
    if tr.shape[0] < k:
        raise ValueError(f"k = {k} neighbours need at least {k} training images, got {tr.shape[0]}")
    if not syn.shape[1] == tr.shape[1] == te.shape[1]:
        raise ValueError(
            f"synthetic, train and test differ in size: {syn.shape[1]}, {tr.shape[1]}, "
            f"{te.shape[1]} values per image"
        )
    dist, idx = knn(syn, tr, k, device=device)
    base_dist, _ = knn(te, tr, k, device=device)
    dcr, baseline = dist[:, 0].copy(), base_dist[:, 0].copy()
    thresholds = {name: float(np.percentile(baseline, p)) for name, p in levels.items()}
    return MemorisationReport(
        k=int(k),
        space=space,
        dcr=dcr,
        nndr=_nndr(dist),
        neighbour_indices=idx,
        neighbour_distances=dist,
        baseline_dcr=baseline,
        baseline_nndr=_nndr(base_dist),
        thresholds=thresholds,
        flagged={name: dcr < value for name, value in thresholds.items()},
        n_train=int(tr.shape[0]),
        percentiles=levels,
    )


@dataclass(frozen=True)
class ReleaseVerdict:
    """Whether a synthetic set may be released under a memorisation gate, and why."""

    passes: bool
    share_flagged: float
    max_share: float
    level: str
    reason: str


def release_verdict(
    report_summary: dict, *, max_share: float = 0.01, level: str = "p5"
) -> ReleaseVerdict:
    """Gate on `MemorisationReport.summary()` (e.g. stored JSON): the set passes when at most
    `max_share` of its images are flagged at `level`. An empty set does not pass."""
    if not 0.0 <= max_share <= 1.0:
        raise ValueError(f"max_share must lie in [0, 1], got {max_share}")
    shares = report_summary["share_flagged"]
    if level not in shares:
        raise ValueError(f"level {level!r} not in the report; have {sorted(shares)}")
    n = int(report_summary["n_synthetic"])
    n_flagged = int(report_summary["n_flagged"][level])
    share = float(shares[level])
    percentile = float(report_summary.get("percentiles", {}).get(level, level.lstrip("p")))
    if n == 0:
        return ReleaseVerdict(False, 0.0, max_share, level, "No synthetic images were checked.")
    # Compared in counts, so 2 of 200 against 1% is not lost to float round-off.
    passes = n_flagged <= max_share * n * (1 + 1e-12)
    reason = (
        f"{n_flagged} of {n} synthetic images ({share:.1%}) are closer to a training image "
        f"than {100 - percentile:g}% of real test images are; the gate allows {max_share:.1%}"
        + ("." if not passes else ", so the set passes.")
    )
    if report_summary.get("coarse_baseline"):
        reason += (
            f" Only {report_summary['baseline_n']} real test images set the threshold, "
            "so it is coarse."
        )
    if report_summary.get("baseline_zero_dcr"):
        reason += (
            f" {report_summary['baseline_zero_dcr']} real test images are identical to "
            "training images (a split leak), which makes the threshold too strict to flag."
        )
    return ReleaseVerdict(passes, share, max_share, level, reason)
