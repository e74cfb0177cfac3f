"""The manifest of a study backup: its schema (format version 1) and its consistency rules.

Records refer to each other by the *source* database's ids (``image_id``, ``item_id``, ...):
the same numbers as the source installation's exports (``img{item id}``), so an archive can be
read side by side with them. An import gives every row a new id and maps these references.

Field limits repeat the column widths of app/models: PostgreSQL refuses a longer value only at
insert time, and an archive must be refused before anything is written. Strict validation: a
backup is written by synthbench, so anything else in it means damage or tampering.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

FORMAT = "synthbench-study-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
# Blobs are stored content-addressed, so a name is either the manifest or exactly this.
BLOB_NAME = re.compile(r"files/([0-9a-f]{64})")

Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Int32 = Annotated[int, Field(ge=0, le=2**31 - 1)]
Username = Annotated[str, StringConstraints(min_length=1, max_length=120)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text20 = Annotated[str, StringConstraints(max_length=20)]
Text30 = Annotated[str, StringConstraints(max_length=30)]
Text200 = Annotated[str, StringConstraints(max_length=200)]
Text500 = Annotated[str, StringConstraints(max_length=500)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BlobRef(_Record):
    """One stored file: ``files/{sha256}`` in the archive, ``bytes`` long."""

    sha256: Digest
    bytes: Annotated[int, Field(ge=0)]


class StudyRecord(_Record):
    id: Id
    name: Name
    instructions: str
    kind: Literal["reading", "imported"]
    design: dict[str, Any]
    owner: Username
    created_at: AwareDatetime
    # The leakage gate's audit and any reason to open the study despite it (absent in
    # archives written before the gate existed).
    leakage_audit: dict[str, Any] | None = None
    blinding_override: str | None = None


class ImageSetRecord(_Record):
    id: Id
    name: Name
    kind: Text30
    description: str
    owner: Username
    created_at: AwareDatetime
    # Selected for the study (study_image_sets), not only holding one of its images.
    linked: bool


class ImageRecord(_Record):
    id: Id
    image_set_id: Id
    origin: Literal["real", "synthetic"]
    label: Text200 | None
    source: Text200 | None
    original_name: Text500
    sha256: Digest  # of the upload, as recorded at ingest
    # Part of a file name on disk (app/imagesets/storage.py): nothing but letters and digits.
    source_format: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{1,20}$")]
    width: Int32
    height: Int32
    created_at: AwareDatetime
    blinded: BlobRef
    original: BlobRef | None  # None where the source installation had no original file


class ItemRecord(_Record):
    id: Id
    image_id: Id
    practice: bool


class ReaderRecord(_Record):
    id: Id
    username: Username
    display_name: Text200
    role: Literal["reader", "researcher", "admin"]
    pseudonym: Text20 | None
    reader_seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None
    created_at: AwareDatetime


class EntryRecord(_Record):
    id: Id
    reader_id: Id
    item_id: Id
    position: Int32
    practice: bool
    repeat: bool
    first_shown_at: AwareDatetime | None


class AnswerRecord(_Record):
    entry_id: Id
    reader_id: Id
    answer: Literal["real", "fake", "uncertain"]
    confidence: Annotated[float, Field(allow_inf_nan=False)] | None
    reason: str | None
    second_answer: Text200 | None
    shown_at: AwareDatetime | None
    answered_at: AwareDatetime
    duration_ms: Int32 | None


class ExternalRatingRecord(_Record):
    reader: Text200
    image: Text500
    truth: Literal["real", "fake"]
    answer: Literal["real", "fake", "uncertain"]
    confidence: Annotated[float, Field(allow_inf_nan=False)] | None
    reason: str | None
    source: Text200 | None


class Manifest(_Record):
    format: Literal["synthbench-study-backup"]
    format_version: Literal[1]
    synthbench_version: str
    # The source database's schema, for the record; the format version governs the shape.
    alembic_revision: str | None
    exported_at: AwareDatetime
    study: StudyRecord
    image_sets: list[ImageSetRecord]
    images: list[ImageRecord]
    items: list[ItemRecord]
    readers: list[ReaderRecord]
    schedule: list[EntryRecord]
    answers: list[AnswerRecord]
    external_ratings: list[ExternalRatingRecord]

    def blobs(self) -> dict[str, int]:
        """Every stored file the manifest names: sha256 -> size."""
        refs = [i.blinded for i in self.images] + [i.original for i in self.images if i.original]
        return {ref.sha256: ref.bytes for ref in refs}


def _duplicates(what: str, values: Iterable[object]) -> list[str]:
    return [f"{what} {v!r} appears {n} times" for v, n in Counter(values).items() if n > 1][:5]


def _dangling(what: str, refs: Iterable[int], known: set[int], target: str) -> list[str]:
    missing = sorted({r for r in refs if r not in known})
    return [f"{what} refers to {target} {r}, which is not in the archive" for r in missing[:5]]


def reference_problems(m: Manifest) -> list[str]:
    """What the database's keys and constraints would refuse, found before writing anything."""
    sets = {s.id for s in m.image_sets}
    images = {i.id: i for i in m.images}
    items = {i.id: i for i in m.items}
    readers = {r.id for r in m.readers}
    entries = {e.id: e for e in m.schedule}
    problems = _duplicates("image set id", (s.id for s in m.image_sets))
    problems += _duplicates("image id", (i.id for i in m.images))
    problems += _duplicates("study item id", (i.id for i in m.items))
    problems += _duplicates("reader id", (r.id for r in m.readers))
    problems += _duplicates("reader username", (r.username for r in m.readers))
    problems += _duplicates("schedule entry id", (e.id for e in m.schedule))
    problems += _duplicates("study image", (i.image_id for i in m.items))
    problems += _duplicates("image hash in one set", ((i.image_set_id, i.sha256) for i in m.images))
    problems += _duplicates("reader position", ((e.reader_id, e.position) for e in m.schedule))
    problems += _duplicates("answer to entry", (a.entry_id for a in m.answers))
    problems += _duplicates("external rating", ((r.reader, r.image) for r in m.external_ratings))
    problems += _dangling("an image", (i.image_set_id for i in m.images), sets, "image set")
    problems += _dangling("a study item", (i.image_id for i in m.items), set(images), "image")
    problems += _dangling("a schedule entry", (e.reader_id for e in m.schedule), readers, "reader")
    problems += _dangling("a schedule entry", (e.item_id for e in m.schedule), set(items), "item")
    problems += _dangling("an answer", (a.entry_id for a in m.answers), set(entries), "entry")
    problems += [
        f"the answer to entry {a.entry_id} names reader {a.reader_id}, the entry reader "
        f"{entries[a.entry_id].reader_id}"
        for a in m.answers
        if a.entry_id in entries and entries[a.entry_id].reader_id != a.reader_id
    ][:5]
    return problems
