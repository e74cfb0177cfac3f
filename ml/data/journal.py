"""The import journal: which records of an import are finished, so a killed import resumes.

An import writes its rows in record order. Every so often it flushes the rows to disk
(`DatasetWriter.flush`) and only then appends one JSON line per record finished since: the
image key and source sha256 of a stored record, or the report line of a record that failed.
The journal can therefore lag behind the rows, never run ahead of them, and a restarted
import keeps exactly the records it lists and decodes the rest.

The first line binds the journal to its inputs: a keyed digest (`fingerprint`) of the import
arguments and of every record (path, size, mtime, patient, labels). A journal whose
fingerprint differs belongs to another import and is not used. Report lines are stored with
patient ids already masked, and patients never appear otherwise (the writer's entries hold
the keyed `patient_key`, recomputed from the records on resume).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ml.data.formats import Record

JOURNAL = "import_journal.jsonl"
VERSION = 1

__all__ = ["JOURNAL", "Done", "Journal", "fingerprint", "read_journal"]


@dataclass(slots=True)
class Done:
    """What a journal says is finished: records 0..n-1, as (index, key, sha256) for stored
    ones and (index, report line) for failed ones, both in record order."""

    n: int = 0
    stored: list[tuple[int, str, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


def fingerprint(salt: str, settings: dict[str, Any], records: list[Record]) -> str:
    """Keyed digest of the import's arguments and records (keyed: records hold raw ids).

    A source file's size and mtime are part of it, so an edited file restarts the import
    rather than leaving its old rows in the store.
    """
    digest = hmac.new(salt.encode(), b"synthbench-import-journal\0", hashlib.sha256)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode() + b"\0")
    for record in records:
        stat: tuple[int, int] | None = None
        if record.path is not None:
            try:
                st = record.path.stat()
                stat = (st.st_size, st.st_mtime_ns)
            except OSError:
                stat = None
        row = [
            str(record.path),
            record.array_index,
            stat,
            record.patient_id,
            sorted(record.labels.items()),
            record.study_key,
            record.where,
            record.own_patient,
        ]
        digest.update(json.dumps(row).encode() + b"\n")
    return digest.hexdigest()


def read_journal(path: Path, expected: str) -> Done | None:
    """The finished records of the journal at `path`, or None when there is none for the
    fingerprint `expected`. A torn last line (a kill mid-write) ends the journal there."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None
    done = Done()
    with fh:
        head = _parse(fh.readline())
        if head is None or head.get("journal") != VERSION or head.get("fingerprint") != expected:
            return None
        for raw in fh:
            line = _parse(raw)
            if line is None or line.get("i") != done.n:
                break
            if "x" in line:
                done.failed.append((done.n, str(line["x"])))
            else:
                done.stored.append((done.n, str(line["k"]), str(line["s"])))
            done.n += 1
    return done


def _parse(raw: bytes) -> dict[str, Any] | None:
    if not raw.endswith(b"\n"):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Journal:
    """Appends finished records to the journal of `folder`; `start` says how many are done."""

    def __init__(self, folder: Path, digest: str, done: Done | None) -> None:
        self.path = Path(folder) / JOURNAL
        self._fh: TextIO
        if done is None:
            self._fh = self.path.open("w", encoding="utf-8")
            self._fh.write(json.dumps({"journal": VERSION, "fingerprint": digest}) + "\n")
            self._fh.flush()
            self.start = 0
        else:
            self._rewind(done.n)
            self._fh = self.path.open("a", encoding="utf-8")
            self.start = done.n
        self._pending: list[str] = []

    def _rewind(self, n: int) -> None:
        """Cut the file after its header and `n` record lines (drops a torn tail)."""
        with self.path.open("rb+") as fh:
            for _ in range(n + 1):
                fh.readline()
            fh.truncate(fh.tell())

    def stored(self, index: int, key: str, sha256: str) -> None:
        self._pending.append(json.dumps({"i": index, "k": key, "s": sha256}))

    def failed(self, index: int, line: str) -> None:
        self._pending.append(json.dumps({"i": index, "x": line}))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def commit(self) -> None:
        """Append the pending lines; call it only after the rows they describe were flushed."""
        if self._pending:
            # One write per commit: a kill leaves whole lines, or a torn last one read_journal
            # drops.
            self._fh.write("".join(f"{line}\n" for line in self._pending))
            self._fh.flush()
            self._pending.clear()

    def close(self) -> None:
        self._fh.close()
