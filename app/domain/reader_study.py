"""Reader-study design: which images a study shows, and in what order each reader sees them.

Follows the shape of grand-challenge.org reader studies and the "Spot the fake" protocol: a fixed
set of scored images, mixed real and synthetic, balanced by clinical label and by synthetic
source so that neither can give the answer away; an unscored practice block first; a share of
images shown twice to measure intra-reader consistency; an independent order for every reader.

Everything is a pure function of its inputs and a seed. Randomness comes from a private
``random.Random`` and only from its ``random()`` method, whose sequence Python guarantees for a
given seed across versions (``shuffle`` and ``sample`` carry no such promise), so a stored study
can be re-derived exactly after an upgrade.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Literal, TypeVar

Origin = Literal["real", "synthetic"]
DEFAULT_MIN_GAP = 5

T = TypeVar("T")
Stratum = Callable[["ImageRef"], str | None]


@dataclass(frozen=True)
class ImageRef:
    """One stored image. ``key`` is opaque; ``source`` names the synthetic set or checkpoint
    (None for real images); ``label`` is the clinical class."""

    key: str
    origin: Origin
    label: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.origin not in ("real", "synthetic"):
            raise ValueError(f"origin must be 'real' or 'synthetic', got {self.origin!r}")
        if not self.key:
            raise ValueError("key must be a non-empty string")


@dataclass(frozen=True)
class Selection:
    """Scored and practice images, each sorted by key so the order carries no information."""

    scored: tuple[ImageRef, ...]
    practice: tuple[ImageRef, ...]
    notes: tuple[str, ...] = ()  # plain-English compromises the draw had to make


@dataclass(frozen=True)
class ScheduleItem:
    position: int  # 0-based index in the reader's full sequence, practice included
    image_key: str
    practice: bool
    repeat: bool


def _round(x: float) -> float:
    # 0.07 * 100 is 7.000000000000001 in floating point; ceil() would make that 8.
    return round(x, 9)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _listing(keys: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


@dataclass(frozen=True)
class StudyDesign:
    n_images: int  # scored images, repeats and practice not included
    synthetic_share: float
    stratify_by_label: bool = True
    stratify_by_source: bool = True
    repeat_share: float = 0.0
    practice_images: int = 0
    seed: int = 0

    @property
    def n_synthetic(self) -> int:
        # Half rounds up: Python's round() would give 2 synthetic for 50% of 5 but 4 for 50% of 7.
        return math.floor(_round(self.n_images * self.synthetic_share) + 0.5)

    @property
    def n_real(self) -> int:
        return self.n_images - self.n_synthetic

    def repeats_for(self, n_scored: int) -> int:
        """Repeats every reader is shown when ``n_scored`` images were selected: the number the
        design page states, computed by the function that builds the schedules."""
        return repeat_count(n_scored, self.repeat_share)

    def validate(
        self,
        real: Sequence[ImageRef] | None = None,
        synthetic: Sequence[ImageRef] | None = None,
    ) -> list[str]:
        """Human-readable problems, empty when the design is usable.

        Without the two image pools only the numbers are checked; with them, also whether there
        are enough images for the scored set and, separately, for the practice block.
        """
        problems: list[str] = []
        if not _is_int(self.n_images) or self.n_images < 1:
            problems.append(f"The study needs at least 1 scored image, got {self.n_images!r}.")
        if not 0 <= self.synthetic_share <= 1:
            problems.append(f"Synthetic share must be in [0, 1], got {self.synthetic_share!r}.")
        if not 0 <= self.repeat_share <= 0.5:
            problems.append(f"Repeat share must be in [0, 0.5], got {self.repeat_share!r}.")
        if not _is_int(self.practice_images) or self.practice_images < 0:
            problems.append(f"Practice images must be an int >= 0, got {self.practice_images!r}.")
        if not _is_int(self.seed) or self.seed < 0:
            # random.Random seeds -s like s, so negative seeds would silently alias positive ones.
            problems.append(f"The seed must be a whole number >= 0, got {self.seed!r}.")
        if not problems and self.repeat_share > 0 and self.n_images < 2:
            problems.append("Repeats need at least 2 scored images, or a repeat follows itself.")
        if problems or real is None or synthetic is None:
            return problems
        problems += _pool_problems(real, synthetic)
        n, k = self.n_images, self.n_synthetic
        asked = f"Asked for {n} images with {self.synthetic_share * 100:.4g}% synthetic"
        if k > len(synthetic):
            problems.append(
                f"{asked} ({k}) but only {len(synthetic)} synthetic images are available."
            )
        if n - k > len(real):
            problems.append(
                f"{asked} ({n - k} real) but only {len(real)} real images are available."
            )
        left = len(real) + len(synthetic) - n
        if left >= 0 and self.practice_images > left:
            problems.append(
                f"Asked for {self.practice_images} practice images but only {left} images are "
                f"left besides the {n} scored ones; practice never reuses a scored image."
            )
        return problems


def _pool_problems(real: Sequence[ImageRef], synthetic: Sequence[ImageRef]) -> list[str]:
    problems = []
    for name, pool in (("real", real), ("synthetic", synthetic)):
        misplaced = [r.key for r in pool if r.origin != name]
        if misplaced:
            problems.append(
                f"The {name} list holds images of another origin: {_listing(misplaced)}."
            )
    counts = Counter(r.key for r in [*real, *synthetic])
    duplicated = sorted(k for k, c in counts.items() if c > 1)
    if duplicated:
        problems.append(f"Image keys listed more than once: {_listing(duplicated)}.")
    return problems


def _make_rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible study design, not a secret


def _below(rng: random.Random, n: int) -> int:
    # min() guards the one float that could round random() * n up to n.
    return min(int(rng.random() * n), n - 1)


def _shuffled(items: Sequence[T], rng: random.Random) -> list[T]:
    """Fisher-Yates driven by ``random()`` alone, for the cross-version guarantee above."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = _below(rng, i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def _sort_key(value: str | None) -> tuple[bool, str]:
    return value is None, value or ""


def _apportion(
    k: int, capacity: dict[str | None, int], priority: list[str | None]
) -> Counter[str | None]:
    """Split k picks over strata as evenly as availability allows.

    Largest remainder with equal target shares: each open stratum gets floor(remaining / open)
    and, since every remainder then ties, the leftover picks go one each in ``priority`` order.
    A stratum that runs short gives all it has and its deficit is re-split evenly over the
    strata that still have images (water-filling), so shortfalls are filled from the others.
    """
    alloc: Counter[str | None] = Counter()
    remaining = k
    open_ = [s for s in priority if capacity[s] > 0]
    while remaining > 0 and open_:
        share = remaining // len(open_)
        if share == 0:
            for s in open_[:remaining]:
                alloc[s] += 1
            break
        for s in open_:
            give = min(share, capacity[s] - alloc[s])
            alloc[s] += give
            remaining -= give
        open_ = [s for s in open_ if alloc[s] < capacity[s]]
    return alloc


def _draw(
    pool: Sequence[ImageRef],
    k: int,
    dims: Sequence[Stratum],
    used: Sequence[Counter[str | None]],
    rng: random.Random,
) -> list[ImageRef]:
    """k images without replacement, balanced over ``dims[0]``, then within each of its strata
    over ``dims[1]``, and so on.

    ``used`` counts picks per stratum across sibling calls; ties in the remainder go to the
    least-used stratum first (then a seeded order), so sources stay even across labels too.
    """
    if not dims:
        return _shuffled(pool, rng)[:k]
    groups: dict[str | None, list[ImageRef]] = defaultdict(list)
    for ref in pool:
        groups[dims[0](ref)].append(ref)
    seeded = _shuffled(sorted(groups, key=_sort_key), rng)
    priority = sorted(seeded, key=lambda s: used[0][s])  # stable: seeded order breaks ties
    alloc = _apportion(k, {s: len(g) for s, g in groups.items()}, priority)
    picked: list[ImageRef] = []
    for stratum in sorted(groups, key=_sort_key):
        picked += _draw(groups[stratum], alloc[stratum], dims[1:], used[1:], rng)
        used[0][stratum] += alloc[stratum]
    return picked


_by_label: Stratum = attrgetter("label")
_by_source: Stratum = attrgetter("source")


def _dims(design: StudyDesign, synthetic: bool) -> list[Stratum]:
    dims: list[Stratum] = [_by_label] if design.stratify_by_label else []
    if synthetic and design.stratify_by_source:
        dims.append(_by_source)
    return dims


def _name(stratum: str | None) -> str:
    return "(none)" if stratum is None else repr(stratum)


def _shortfall_notes(
    part: str, dim: str, chosen: Sequence[ImageRef], strata: set[str | None], by: Stratum
) -> list[str]:
    if not chosen or len(strata) < 2:
        return []
    fair = len(chosen) // len(strata)
    counts = Counter(by(r) for r in chosen)
    return [
        f"Only {counts[s]} {part} image(s) with {dim} {_name(s)} "
        f"could be used (an even split gives {fair}); other {dim}s made up the difference."
        for s in sorted(strata, key=_sort_key)
        if counts[s] < fair
    ]


def _confound_notes(scored: Sequence[ImageRef]) -> list[str]:
    labels = {o: {r.label for r in scored if r.origin == o} for o in ("real", "synthetic")}
    if not labels["real"] or not labels["synthetic"]:
        return []
    return [
        f"Label {_name(label)} appears only among the {origin} scored images, so it reveals origin."
        for origin, other in (("real", "synthetic"), ("synthetic", "real"))
        for label in sorted(labels[origin] - labels[other], key=_sort_key)
    ]


def select_images(
    real: Sequence[ImageRef], synthetic: Sequence[ImageRef], design: StudyDesign
) -> Selection:
    """Draw the scored set and the practice block; raises ValueError if ``validate`` objects.

    Exactly ``design.n_synthetic`` synthetic and ``design.n_real`` real scored images, without
    replacement. With ``stratify_by_label`` each part is split evenly over the labels found in
    either pool; with ``stratify_by_source`` the synthetic part is split evenly over sources
    (within each label when both apply). A stratum short of images contributes all it has and
    the rest come evenly from the other strata (see ``_apportion``); each such compromise is
    described in ``Selection.notes``. Practice images come only from images left over, half
    real and half synthetic (the odd one real) unless one side runs out.
    """
    problems = design.validate(real, synthetic)
    if problems:
        raise ValueError(" ".join(problems))
    rng = _make_rng(design.seed)
    # Sorted by key, the draw depends on which images exist, not on the order a query returned.
    real_pool = sorted(real, key=lambda r: r.key)
    syn_pool = sorted(synthetic, key=lambda r: r.key)

    def draw(pool: Sequence[ImageRef], k: int, is_synthetic: bool) -> list[ImageRef]:
        dims = _dims(design, is_synthetic)
        return _draw(pool, k, dims, [Counter() for _ in dims], rng)

    syn = draw(syn_pool, design.n_synthetic, True)
    reals = draw(real_pool, design.n_real, False)

    taken = {r.key for r in [*syn, *reals]}
    real_left = [r for r in real_pool if r.key not in taken]
    syn_left = [r for r in syn_pool if r.key not in taken]
    want_syn = design.practice_images // 2
    n_practice_real = min(design.practice_images - min(want_syn, len(syn_left)), len(real_left))
    n_practice_syn = design.practice_images - n_practice_real
    practice = draw(real_left, n_practice_real, False) + draw(syn_left, n_practice_syn, True)

    notes: list[str] = []
    if design.stratify_by_label:
        labels = {r.label for r in [*real_pool, *syn_pool]}
        notes += _shortfall_notes("synthetic", "label", syn, labels, _by_label)
        notes += _shortfall_notes("real", "label", reals, labels, _by_label)
    if design.stratify_by_source:
        sources = {r.source for r in syn_pool}
        notes += _shortfall_notes("synthetic", "source", syn, sources, _by_source)
    notes += _confound_notes([*syn, *reals])
    if n_practice_syn != want_syn:
        notes.append(
            f"Practice has {n_practice_real} real and {n_practice_syn} synthetic images: "
            "too few unscored images of one origin for an even split."
        )
    return Selection(
        scored=tuple(sorted([*syn, *reals], key=lambda r: r.key)),
        practice=tuple(sorted(practice, key=lambda r: r.key)),
        notes=tuple(notes),
    )


def reader_seed(study_seed: int, reader_index: int) -> int:
    """First 8 bytes of SHA-256("synthbench/reader/{study_seed}/{reader_index}"), unsigned.

    Hashed, not ``study_seed + reader_index``, so study 1's reader 2 does not share study 2's
    reader 1 order; SHA-256, not numpy's SeedSequence, so it can never change with a library
    version; 64 bits make a collision between a study's n readers negligible (~n^2 / 2^65).
    """
    if not _is_int(study_seed) or not _is_int(reader_index) or reader_index < 0:
        raise ValueError("study_seed must be an int and reader_index an int >= 0")
    digest = hashlib.sha256(f"synthbench/reader/{study_seed}/{reader_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def repeat_count(n_scored: int, repeat_share: float) -> int:
    """How many scored images a reader sees twice: repeat_share * n_scored to the nearest
    whole number (halves up), and at least 1 when the share is above 0.

    Nearest, not a ceiling: the design page states the share, and 17% of 12 read as "2" there
    while a ceiling showed readers 3 (25%). At least 1, so a small share still measures
    intra-reader agreement instead of silently measuring nothing.
    """
    if repeat_share <= 0:
        return 0
    return max(1, math.floor(_round(repeat_share * n_scored) + 0.5))


def reader_schedule(
    selection: Selection,
    reader_seed: int,
    repeat_share: float,
    min_gap: int = DEFAULT_MIN_GAP,
) -> list[ScheduleItem]:
    """One reader's full sequence: the practice block, then the scored images with repeats.

    Both blocks are shuffled with ``reader_seed``. ``repeat_count`` scored images are shown a
    second time, each at least ``gap = min(min_gap, n - r + 1)`` positions after its first
    showing (n scored images, r repeats). The repeated images are drawn from the first
    ``n - gap + 1`` of the shuffled order, and each repeat is inserted after a uniformly drawn
    image at least ``gap - 1`` places further on; anything inserted in between only widens the
    gap. ``gap`` is the widest this random placement can promise in short studies, and since
    repeat_share <= 0.5 it is at least 2 whenever n >= 2: a repeat never follows its original.
    """
    if not 0 <= repeat_share <= 0.5:
        raise ValueError(f"repeat_share must lie in [0, 0.5], got {repeat_share!r}")
    if not _is_int(min_gap) or min_gap < 2:
        raise ValueError(f"min_gap must be an int >= 2 so repeats are never adjacent: {min_gap!r}")
    scored_keys = sorted(r.key for r in selection.scored)
    practice_keys = sorted(r.key for r in selection.practice)
    if len(set(scored_keys)) != len(scored_keys) or set(scored_keys) & set(practice_keys):
        raise ValueError("scored images must be distinct and disjoint from practice images")
    n = len(scored_keys)
    r = repeat_count(n, repeat_share)
    if r and n < 2:
        raise ValueError("repeats need at least 2 scored images, or a repeat follows itself")

    rng = _make_rng(reader_seed)
    practice = _shuffled(practice_keys, rng)
    order = _shuffled(scored_keys, rng)
    gap = min(min_gap, n - r + 1)
    repeated = sorted(_shuffled(range(n - gap + 1), rng)[:r]) if r else []
    after: dict[int, list[str]] = defaultdict(list)
    for i in repeated:
        first_slot = i + gap - 1
        after[first_slot + _below(rng, n - first_slot)].append(order[i])

    sequence = [(key, True, False) for key in practice]
    for j, key in enumerate(order):
        sequence.append((key, False, False))
        sequence += [(again, False, True) for again in after[j]]
    return [
        ScheduleItem(position=p, image_key=key, practice=is_practice, repeat=is_repeat)
        for p, (key, is_practice, is_repeat) in enumerate(sequence)
    ]
