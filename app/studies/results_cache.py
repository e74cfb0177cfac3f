"""Per-process cache of what the results page derives from a study's answers.

Keyed by the study's state: its design, blinding audit and override, and the count, largest id
and latest time of its answers (or imported ratings). A new answer changes the key, so nothing
is ever invalidated by hand and a stale entry is never served; entries of past states simply
age out of a bounded LRU. Each web worker process has its own cache, and since the key is read
from the database on every request, workers never disagree.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Answer, ExternalRating, Study, StudyKind, StudyReader

MAX_ENTRIES = 32  # a few studies x two policies x their latest states
T = TypeVar("T")


class BoundedLru:
    """A thread-safe LRU of at most ``size`` entries (web requests run in a thread pool)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = BoundedLru(MAX_ENTRIES)


def study_state(db: Session, study: Study) -> tuple[Hashable, ...]:
    """Everything the results depend on, as a hashable key: one aggregate query."""
    if study.kind is StudyKind.imported:
        query = select(
            func.count(ExternalRating.id), func.max(ExternalRating.id), func.sum(ExternalRating.id)
        ).where(ExternalRating.study_id == study.id)
    else:
        # Answers are only ever added or deleted with their reader: count, max and sum of the
        # ids change with either; answered_at catches a row rewritten in place.
        query = (
            select(
                func.count(Answer.id),
                func.max(Answer.id),
                func.sum(Answer.id),
                func.max(Answer.answered_at),
            )
            .join(StudyReader, Answer.study_reader_id == StudyReader.id)
            .where(StudyReader.study_id == study.id)
        )
    answers = tuple(str(v) for v in db.execute(query).one())
    settings = json.dumps(
        [study.kind.value, study.design, study.leakage_audit, study.blinding_override],
        sort_keys=True,
        default=str,
    )
    return (study.id, settings, answers)


def cached_by_study_state(
    compute: Callable[..., tuple[list[Any], dict[str, Any]]],
) -> Callable[..., tuple[list[Any], dict[str, Any]]]:
    """Wrap ``statistics_for(db, study, policy)``: computed once per study state and policy.

    Callers get their own copies: a page that adds a key to the statistics must not change
    what the next request is served.
    """

    @functools.wraps(compute)
    def cached(
        db: Session,
        study: Study,
        policy: str | None = None,
        *,
        state: tuple[Hashable, ...] | None = None,
    ) -> tuple[list[Any], dict[str, Any]]:
        # ``state``: the study_state() the caller read for this request, so one page reads
        # it once however many cached parts it uses.
        key = ("statistics", state or study_state(db, study), policy)
        found = CACHE.get(key)
        if found is None:
            found = compute(db, study, policy)
            CACHE.put(key, found)
        ratings, stats = found
        return list(ratings), copy.deepcopy(stats)

    return cached


def update_latest(study: Study, name: str, update: Callable[[T | None], T]) -> T:
    """``update(previous)`` with the value last stored under ``name`` for this study (None if
    none, or aged out), stored as the latest; for values that grow with the study."""
    key = (name, "latest", study.id)
    value = update(CACHE.get(key))
    CACHE.put(key, value)
    return value


def cached_for_state(
    db: Session,
    study: Study,
    name: str,
    build: Callable[[], T],
    *,
    state: tuple[Hashable, ...] | None = None,
) -> T:
    """``build()`` once per study state (``state`` if the caller read it already) under
    ``name``; the value must not be mutated."""
    key = (name, state or study_state(db, study))
    found = CACHE.get(key)
    if found is None:
        found = build()
        CACHE.put(key, found)
    return found  # type: ignore[no-any-return]
