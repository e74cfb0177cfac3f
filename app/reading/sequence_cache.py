"""Each reader's sequence, read once per process instead of once per answer.

A sequence (which entry sits at which position, under which opaque id, showing which stored
image) is written once, when the reader first opens the study, and never changes afterwards:
entries are only ever deleted together with their reader. So every web worker may keep its own
copy without talking to the others; nothing in it is sent to a reader that was not sent before
(it lives on the server, and the routes still answer every refusal alike).

The key carries the reader's start time as well as its id: a reader deleted and created again
(an id the database reused) has a new start, so it never meets the old reader's entries. What
is mutable about an entry (when it was first shown, whether it was answered) is not cached;
the answer path reads it from the database in the same transaction that writes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Image, ScheduleEntry, StudyItem, StudyReader

# At 500 images a sequence is ~60 kB; 1,024 readers bound one process to ~60 MB at worst.
MAX_READERS = 1024


@dataclass(frozen=True)
class Presentation:
    """One entry of a sequence as the reading page needs it; ``image_key`` never leaves the
    server (the image route looks it up, the page only sees ``opaque_id``)."""

    entry_id: int
    position: int
    opaque_id: str
    practice: bool
    image_key: str


@dataclass(frozen=True)
class Sequence:
    entries: tuple[Presentation, ...]  # in position order
    by_opaque: dict[str, int] = field(init=False, repr=False, compare=False)
    by_entry: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_opaque", {p.opaque_id: i for i, p in enumerate(self.entries)})
        object.__setattr__(self, "by_entry", {p.entry_id: i for i, p in enumerate(self.entries)})

    def index_of(self, opaque_id: str) -> int | None:
        return self.by_opaque.get(opaque_id)

    def index_of_entry(self, entry_id: int) -> int | None:
        return self.by_entry.get(entry_id)

    def at(self, index: int) -> Presentation | None:
        return self.entries[index] if 0 <= index < len(self.entries) else None


_Key = tuple[int, datetime]


class SequenceCache:
    """Least-recently-used sequences of this process, shared by its request threads."""

    def __init__(self, max_readers: int = MAX_READERS) -> None:
        self.max_readers = max_readers
        self._items: OrderedDict[_Key, Sequence] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _Key) -> Sequence | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: _Key, sequence: Sequence) -> None:
        with self._lock:
            self._items[key] = sequence
            self._items.move_to_end(key)
            while len(self._items) > self.max_readers:
                self._items.popitem(last=False)

    def drop(self, key: _Key) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = SequenceCache()


def _key(study_reader: StudyReader) -> _Key | None:
    # No start time: no sequence yet (ensure_schedule sets both in one transaction).
    if study_reader.started_at is None:
        return None
    return (study_reader.id, study_reader.started_at)


def load_sequence(db: Session, study_reader: StudyReader) -> Sequence:
    rows = db.execute(
        select(
            ScheduleEntry.id,
            ScheduleEntry.position,
            ScheduleEntry.opaque_id,
            ScheduleEntry.practice,
            Image.key,
        )
        .join(StudyItem, StudyItem.id == ScheduleEntry.study_item_id)
        .join(Image, Image.id == StudyItem.image_id)
        .where(ScheduleEntry.study_reader_id == study_reader.id)
        .order_by(ScheduleEntry.position)
    ).all()
    return Sequence(tuple(Presentation(*row) for row in rows))


def sequence_of(db: Session, study_reader: StudyReader, *, fresh: bool = False) -> Sequence:
    """The reader's sequence (empty before their first visit); ``fresh`` reads it again."""
    key = _key(study_reader)
    if key is None:
        return Sequence(())
    found = None if fresh else CACHE.get(key)
    if found is None:
        found = load_sequence(db, study_reader)
        if found.entries:
            CACHE.put(key, found)
    return found
