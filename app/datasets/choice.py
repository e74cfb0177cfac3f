"""Which dataset a launch form pre-selects when the user has not chosen one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class _Choosable(Protocol):
    id: int
    parent_id: int | None


def main_dataset_id(datasets: Sequence[_Choosable]) -> int | None:
    """The newest dataset that is not a subset of another, else the newest one.

    A benchmark subset is written after its parent, so "newest first" alone would pre-select
    the subset: a GAN or sweep then trains on a handful of images without the user noticing.
    """
    if not datasets:
        return None
    newest_first = sorted(datasets, key=lambda d: d.id, reverse=True)
    main = next((d for d in newest_first if d.parent_id is None), newest_first[0])
    return main.id
