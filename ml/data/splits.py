"""Patient-level train / val / test splits, stratified by label combination.

Guarantees (exact, by construction):

* every image of one patient lands in the same split: patients are assigned, not images;
* the result depends only on the entries as a set and the seed (`np.random.default_rng`):
  patients are sorted by key before the seeded shuffle, so input order does not matter;
* a label combination (stratum) held by at least as many patients as there are splits with a
  positive fraction appears in every one of those splits.

Approximation (greedy, not optimal): a patient's stratum is the most common label combination
among its images (ties go to the combination rarer in the whole dataset, so rare classes get
the stratification). Strata are processed rarest first; within a stratum patients go, largest
first, to the split furthest below its target. The target carries over what earlier strata
left unbalanced, so the whole dataset stays near `fractions` while each stratum deviates
from its own share by at most about one patient's images. The coverage rule above overrides
proportions in small strata (three patients over three splits give one each).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.7, "val": 0.1, "test": 0.2}

SplitEntry = tuple[str, str, Hashable]  # (image key, patient key, label combination)

__all__ = ["DEFAULT_FRACTIONS", "SplitEntry", "patient_split"]


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    out = {str(name): float(f) for name, f in fractions.items()}
    if not out or any(f < 0 or not np.isfinite(f) for f in out.values()):
        raise ValueError(f"fractions must be non-negative numbers, got {fractions!r}")
    if abs(sum(out.values()) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {sum(out.values())}")
    return out


def _sort_key(value: Hashable) -> str:
    # Label combinations may mix int and str; their repr gives a total, stable order.
    return repr(value)


def patient_split(
    entries: Sequence[SplitEntry],
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[str, str]:
    """Map every image key to a split name; see the module docstring for what is guaranteed."""
    fracs = _check_fractions(fractions)
    # Zero-fraction splits are kept in the mapping's vocabulary but never receive a patient.
    active = [name for name, f in fracs.items() if f > 0]
    # Tie-break between equally deficient splits: larger fraction first, then given order.
    order = {name: i for i, name in enumerate(sorted(active, key=lambda s: -fracs[s]))}

    images: dict[str, list[str]] = defaultdict(list)
    combos: dict[str, Counter[Hashable]] = defaultdict(Counter)
    seen: set[str] = set()
    for key, patient, combo in entries:
        if key in seen:
            raise ValueError(f"duplicate image key {key!r}")
        seen.add(key)
        images[patient].append(key)
        combos[patient][combo] += 1
    if not images:
        return {}
    overall: Counter[Hashable] = Counter()
    for counter in combos.values():
        overall.update(counter)

    stratum_of: dict[str, Hashable] = {}
    for patient, counter in combos.items():
        top = max(counter.values())
        tied = [c for c, n in counter.items() if n == top]
        stratum_of[patient] = min(tied, key=lambda c: (overall[c], _sort_key(c)))

    rng = np.random.default_rng(seed)
    members: dict[Hashable, list[str]] = defaultdict(list)
    for patient in sorted(images):
        members[stratum_of[patient]].append(patient)
    strata = sorted(members, key=_sort_key)
    strata = [strata[i] for i in rng.permutation(len(strata))]
    # Stable sort after a seeded shuffle: rarest first, equal sizes in seeded order.
    strata.sort(key=lambda s: sum(len(images[p]) for p in members[s]))

    assigned_total = dict.fromkeys(active, 0)
    images_done = 0
    result: dict[str, str] = {}
    for stratum in strata:
        patients = [members[stratum][i] for i in rng.permutation(len(members[stratum]))]
        patients.sort(key=lambda p: -len(images[p]))  # large patients first: easier packing
        images_done += sum(len(images[p]) for p in patients)
        covered: set[str] = set()
        must_cover = len(patients) >= len(active)
        for patient in patients:
            candidates = active
            if must_cover and len(covered) < len(active):
                candidates = [s for s in active if s not in covered]
            # Deficit against the target at the end of this stratum, which includes whatever
            # earlier strata left unbalanced; ties go to the larger split.
            chosen = max(
                candidates,
                key=lambda s: (fracs[s] * images_done - assigned_total[s], -order[s]),
            )
            covered.add(chosen)
            assigned_total[chosen] += len(images[patient])
            for key in images[patient]:
                result[key] = chosen
    return result
