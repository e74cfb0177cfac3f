"""The zip file of a study backup: written atomically, read as hostile until checked.

An archive holds ``manifest.json`` and ``files/{sha256}`` blobs, nothing else. Reading checks the
directory before a byte is inflated (names, duplicates, encryption, compression, declared
sizes) and every blob while it is copied out (size and hash), so a damaged, tampered or
oversized archive is refused before anything reaches the database or the file store. Nothing
is ever written under a name taken from the archive.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from app.studies.backup_manifest import BLOB_NAME, MANIFEST_NAME, BlobRef

MiB = 1024 * 1024
GiB = 1024 * MiB
_CHUNK = MiB
# Fixed entry times: the same study exported twice gives the same bytes but for exported_at.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# zipfile inflates a whole bzip2/LZMA block per read, so only these keep reads bounded.
_ALLOWED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_SHOWN = 10
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


class BackupError(ValueError):
    """The archive was refused; ``problems`` says why, each line fit to show the person."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ImportLimits:
    max_archive_bytes: int = 64 * GiB
    max_entries: int = 1_000_000
    max_file_bytes: int = 4 * GiB
    max_total_bytes: int = 64 * GiB
    max_manifest_bytes: int = 256 * MiB


def _size(n: int) -> str:
    return f"{n / MiB:,.1f} MiB" if n >= MiB else f"{n:,} bytes"


# --- writing ----------------------------------------------------------------------------------


@dataclass
class ArchiveWriter:
    zf: zipfile.ZipFile
    written: set[str] = field(default_factory=set)

    def add_file(self, path: Path) -> BlobRef:
        """Store a file once per content (two images with equal bytes share a blob)."""
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self.written:
            # Images are compressed already; deflating them again costs time for nothing.
            self._write(f"files/{digest}", data, zipfile.ZIP_STORED)
            self.written.add(digest)
        return BlobRef(sha256=digest, bytes=len(data))

    def add_manifest(self, data: bytes) -> None:
        self._write(MANIFEST_NAME, data, zipfile.ZIP_DEFLATED)

    def _write(self, name: str, data: bytes, compression: int) -> None:
        info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
        info.compress_type = compression
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        self.zf.writestr(info, data)


@contextmanager
def archive_writer(out: Path) -> Iterator[ArchiveWriter]:
    """Write next to ``out`` and rename at the end: a failed export leaves no half archive."""
    partial = out.with_name(f".{out.name}.{secrets.token_hex(4)}.partial")
    try:
        with zipfile.ZipFile(partial, "w", allowZip64=True) as zf:
            yield ArchiveWriter(zf)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


# --- reading ----------------------------------------------------------------------------------


def _unsafe(name: str) -> str | None:
    path = PurePosixPath(name.replace("\\", "/"))
    if "\x00" in name:
        return "a NUL character"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in path.parts:
        return "a '..' component (zip slip)"
    return None


def _entry_problem(info: zipfile.ZipInfo, limits: ImportLimits) -> str | None:
    # orig_filename: zipfile cuts `filename` at a NUL, hiding part of what was stored.
    name = info.orig_filename
    why = _unsafe(name)
    if why:
        return f"entry {name!r} has an unsafe path ({why})"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"entry {name!r} is a symbolic link"
    if name != MANIFEST_NAME and not BLOB_NAME.fullmatch(name):
        return f"entry {name!r} is not part of a synthbench study backup"
    if info.flag_bits & 0x1:
        return f"entry {name!r} is encrypted"
    if info.compress_type not in _ALLOWED_COMPRESSION:
        return f"entry {name!r} uses compression method {info.compress_type}"
    limit = limits.max_manifest_bytes if name == MANIFEST_NAME else limits.max_file_bytes
    if info.file_size > limit:
        return f"entry {name!r} is {_size(info.file_size)} unpacked, over the {_size(limit)} limit"
    return None


def _directory_problems(infos: list[zipfile.ZipInfo], limits: ImportLimits) -> list[str]:
    if len(infos) > limits.max_entries:
        return [f"the archive holds {len(infos):,} entries, over the {limits.max_entries:,} limit"]
    problems = [p for p in (_entry_problem(i, limits) for i in infos) if p][:_SHOWN]
    names = Counter(i.orig_filename for i in infos)
    problems += [f"entry {n!r} appears {k} times" for n, k in names.items() if k > 1][:_SHOWN]
    total = sum(i.file_size for i in infos)
    if total > limits.max_total_bytes:
        problems.append(
            f"the archive unpacks to {_size(total)}, over the {_size(limits.max_total_bytes)} limit"
        )
    if MANIFEST_NAME not in names:
        problems.append(f"the archive has no {MANIFEST_NAME}")
    return problems


@dataclass
class Archive:
    zf: zipfile.ZipFile
    blobs: dict[str, zipfile.ZipInfo]
    unpacked_bytes: int

    def manifest_bytes(self) -> bytes:
        info = self.zf.getinfo(MANIFEST_NAME)
        try:
            with self.zf.open(info) as fh:
                return fh.read(info.file_size + 1)
        except _DAMAGED as exc:
            raise BackupError([f"{MANIFEST_NAME} is damaged ({exc})"]) from exc

    def extract_blob(self, ref: BlobRef, dest: Path) -> None:
        """Copy one blob out, refusing it unless its size and SHA-256 are the manifest's."""
        info = self.blobs.get(ref.sha256)
        if info is None:
            raise BackupError([f"files/{ref.sha256} is missing from the archive"])
        digest, size = hashlib.sha256(), 0
        try:
            with self.zf.open(info) as src, dest.open("xb") as out:
                # Reads are bounded by the declared size, which the directory check capped.
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except _DAMAGED as exc:
            raise BackupError([f"files/{ref.sha256} is damaged ({exc})"]) from exc
        if size != ref.bytes or digest.hexdigest() != ref.sha256:
            raise BackupError(
                [f"files/{ref.sha256} does not match its hash: the archive was altered"]
            )


@contextmanager
def open_archive(path: Path, limits: ImportLimits) -> Iterator[Archive]:
    """The archive with its directory checked; BackupError lists everything wrong with it."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BackupError([f"cannot read {path}: {exc.strerror or exc}"]) from exc
    if size > limits.max_archive_bytes:
        raise BackupError(
            [f"the archive is {_size(size)}, over the {_size(limits.max_archive_bytes)} limit"]
        )
    try:
        zf = zipfile.ZipFile(path)
    except _DAMAGED as exc:
        raise BackupError([f"{path.name} is not a readable zip file ({exc})"]) from exc
    with zf:
        infos = zf.infolist()
        problems = _directory_problems(infos, limits)
        if problems:
            raise BackupError(problems)
        blobs = {m.group(1): i for i in infos if (m := BLOB_NAME.fullmatch(i.filename))}
        yield Archive(zf, blobs, sum(i.file_size for i in blobs.values()))
