"""Which real images to pair with a synthetic set for a reader study, and how to lay it out.

Pure rules: per label as many real images as there are synthetic ones, from the held-out splits
before the split the GAN learned from, in an order fixed by a seed and each image's row, so
equal inputs always give the same images (`match_key` names those inputs).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.domain.reader_study import StudyDesign

# Held-out first: a reader study should not show the images the GAN was fitted to.
SPLIT_PREFERENCE = ("test", "val", "train")
MATCH_SEED = 0
REPEAT_SHARE = 0.1


@dataclass(frozen=True)
class Candidate:
    """One real image of the dataset: its row in the store, its class name and its split."""

    row: int
    label: str
    split: str


@dataclass(frozen=True)
class RealMatch:
    """The real images taken for each wanted label, each label's in preference order."""

    wanted: Mapping[str, int]
    picked: tuple[Candidate, ...]

    @property
    def counts(self) -> Counter[str]:
        return Counter(c.label for c in self.picked)

    @property
    def by_split(self) -> Counter[str]:
        return Counter(c.split for c in self.picked)

    @property
    def complete(self) -> bool:
        return all(self.counts[label] >= n for label, n in self.wanted.items())


def split_order(available: Iterable[str], trained_on: str | None) -> tuple[str, ...]:
    """test, val, train, then any other split by name; the split the GAN was trained on goes
    last whatever its name (None: it saw every split, so the usual order stands)."""
    names = set(available)
    order = [s for s in SPLIT_PREFERENCE if s in names]
    order += sorted(names - set(SPLIT_PREFERENCE))
    if trained_on in order:
        order.remove(trained_on)
        order.append(trained_on)
    return tuple(order)


def _rank(seed: int, row: int) -> bytes:
    # A hash per row, not a shuffle: two rows keep their order whatever other rows exist, and
    # no random generator whose sequence could change between Python versions is involved.
    return hashlib.sha256(f"synthbench/match/{seed}/{row}".encode()).digest()


def rank_candidates(
    candidates: Iterable[Candidate], order: Sequence[str], seed: int
) -> dict[str, list[Candidate]]:
    """Per label, candidates of the splits in ``order``: earlier splits first, then a seeded
    order within a split. Candidates of splits outside ``order`` are left out."""
    position = {split: i for i, split in enumerate(order)}
    ranked: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        if candidate.split in position:
            ranked[candidate.label].append(candidate)
    for items in ranked.values():
        items.sort(key=lambda c: (position[c.split], _rank(seed, c.row)))
    return dict(ranked)


def _always(_candidate: Candidate) -> bool:
    return True


def match_real_images(
    candidates: Iterable[Candidate],
    wanted: Mapping[str, int],
    order: Sequence[str],
    seed: int = MATCH_SEED,
    usable: Callable[[Candidate], bool] = _always,
) -> RealMatch:
    """``wanted[label]`` real images per label, or all there are when the dataset has fewer.

    ``usable`` is asked about candidates in ranked order, only until a label has enough, so
    the caller can skip a candidate (e.g. one whose pixels equal an image already taken) and
    do costly work for the images actually taken only.
    """
    bad = {label: n for label, n in wanted.items() if not isinstance(n, int) or n < 0}
    if bad:
        raise ValueError(f"wanted counts must be whole numbers >= 0, got {bad}")
    ranked = rank_candidates(candidates, order, seed)
    picked: list[Candidate] = []
    for label in sorted(wanted):
        taken = 0
        for candidate in ranked.get(label, []):
            if taken == wanted[label]:
                break
            if usable(candidate):
                picked.append(candidate)
                taken += 1
    return RealMatch(wanted=dict(wanted), picked=tuple(picked))


def shortfall_notes(wanted: Mapping[str, int], got: Mapping[str, int]) -> list[str]:
    """One plain sentence per label with fewer real images than synthetic ones."""
    return [
        f"Label {label!r}: only {got.get(label, 0)} real image(s) for {n} synthetic; "
        "the dataset has no more."
        for label, n in sorted(wanted.items())
        if got.get(label, 0) < n
    ]


def match_key(
    content_hash: str, resolution: int, order: Sequence[str], seed: int, wanted: Mapping[str, int]
) -> str:
    """Names everything the real images depend on: equal keys give the same images."""
    body = {
        "dataset": content_hash,
        "resolution": resolution,
        "splits": list(order),
        "seed": seed,
        "wanted": dict(sorted(wanted.items())),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def study_design(n_synthetic: int, n_real: int, n_images: int | None, seed: int) -> StudyDesign:
    """Every image of both sets by default; fewer keep the sets' real / synthetic ratio."""
    pool = n_synthetic + n_real
    n = pool if n_images is None else min(n_images, pool)
    return StudyDesign(
        n_images=n,
        synthetic_share=n_synthetic / pool if pool else 0.5,
        stratify_by_label=True,
        stratify_by_source=True,
        repeat_share=REPEAT_SHARE if n >= 2 else 0.0,
        practice_images=0,
        seed=seed,
    )
