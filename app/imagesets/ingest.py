"""Read an uploaded zip of images into validated entries, reporting every problem at once.

Nothing here writes a file or touches the database: the caller receives each decoded image
through `on_image` and decides where it goes. Everything about the upload is hostile until
checked: its size, the zip's directory (entry count, declared sizes, compression ratios), each
entry's name (zip slip), type (symlinks) and content (decoded by magic bytes, never by name).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import secrets
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from app.config import get_settings
from app.domain.blinding import canonical_png, canonical_png_rgb
from app.imagesets.manifest import MANIFEST_NAME as MANIFEST_NAME
from app.imagesets.manifest import MAX_TEXT as MAX_TEXT
from app.imagesets.manifest import ManifestRow, parse_manifest, show_name
from app.imagesets.storage import BLINDED_SIZE
from app.models.imageset import Origin
from ml.data.colour import image_has_colour
from ml.data.dicom import MultiFrameError
from ml.data.images import ImageDecodeError, load_image, load_rgb_image, sniff_format

log = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB
MAX_NAME = 500  # width of Image.original_name
_READ_CHUNK = MiB
_SNIFF_BYTES = 132  # enough for sniff_format: a DICOM preamble and its "DICM"
# Junk that desktop tools add to zips and image folders: skipped rather than refused.
_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
# zipfile bounds deflate output per read by the size asked for, but inflates a whole bzip2 or
# LZMA block per call, so with those a lying header could exhaust memory before any check.
_ALLOWED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_NOT_A_ZIP = "The upload is not a zip file. Upload a .zip of PNG, JPEG or DICOM files."

Upload = str | Path | BinaryIO


@dataclass(frozen=True)
class IngestLimits:
    """What one upload may hold. `max_upload_bytes=None` means the configured setting."""

    max_upload_bytes: int | None = None
    max_entries: int = 20_000
    max_total_bytes: int = 2 * GiB
    max_entry_bytes: int = 256 * MiB
    max_ratio: float = 200.0
    ratio_min_bytes: int = MiB
    max_pixels: int = 40_000_000
    # Read from the zip's end record, before zipfile builds one object per directory entry.
    max_zip_records: int = 100_000
    max_directory_bytes: int = 16 * MiB
    max_manifest_bytes: int = 16 * MiB


@dataclass(frozen=True, slots=True)
class IngestEntry:
    """One image that passed every check. `name` is its path inside the zip, for researchers'
    eyes only; its files are stored under the random `key`, never under a client's name."""

    key: str
    name: str
    origin: Origin
    label: str | None
    source: str | None
    sha256: str
    source_format: str
    width: int
    height: int
    size_bytes: int


@dataclass(frozen=True)
class IngestReport:
    entries: list[IngestEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# Gets (entry, original bytes, blinded PNG) per good image, only while no problem is known:
# a doomed upload stops costing disk writes at its first problem.
ImageSink = Callable[[IngestEntry, bytes, bytes], None]


class _EntryError(Exception):
    pass


def read_upload(
    upload: Upload,
    *,
    default_origin: Origin | None,
    limits: IngestLimits | None = None,
    on_image: ImageSink | None = None,
) -> IngestReport:
    """Validate and decode every image of an uploaded zip (a path or a seekable binary file).

    `default_origin` applies when the zip has no manifest.csv (None is then an error). The
    report lists every problem found; `entries` holds only the images without one.
    """
    limits = limits or IngestLimits()
    if isinstance(upload, str | Path):
        with open(upload, "rb") as fh:
            return _read_zip(fh, limits, default_origin, on_image)
    return _read_zip(upload, limits, default_origin, on_image)


def _read_zip(
    fh: BinaryIO, limits: IngestLimits, default_origin: Origin | None, on_image: ImageSink | None
) -> IngestReport:
    max_upload = limits.max_upload_bytes or get_settings().max_upload_bytes
    size = fh.seek(0, io.SEEK_END)
    if size == 0:
        return IngestReport(errors=["The upload is empty: choose a zip file."])
    if size > max_upload:
        return IngestReport(
            errors=[f"The upload is {_mb(size)}, over the {_mb(max_upload)} limit."]
        )
    extent = _directory_extent(fh, size)
    if extent is None:
        return IngestReport(errors=[_NOT_A_ZIP])
    too_many = "The zip's directory lists {:,} entries in {}; the limit is {:,} images."
    if extent[0] > limits.max_zip_records or extent[1] > limits.max_directory_bytes:
        return IngestReport(errors=[too_many.format(extent[0], _mb(extent[1]), limits.max_entries)])
    fh.seek(0)
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as exc:
        return IngestReport(errors=[f"{_NOT_A_ZIP} ({exc})"])
    with archive:
        records = len(archive.infolist())
        if records > limits.max_zip_records:  # the end record understated the count
            return IngestReport(
                errors=[too_many.format(records, _mb(extent[1]), limits.max_entries)]
            )
        return _Reader(archive, limits, default_origin, on_image).run()


@dataclass
class _Reader:
    archive: zipfile.ZipFile
    limits: IngestLimits
    default_origin: Origin | None
    on_image: ImageSink | None
    errors: list[str] = field(default_factory=list)
    entries: list[IngestEntry] = field(default_factory=list)

    def run(self) -> IngestReport:
        candidates, all_names = self._screen(self.archive.infolist())
        declared = sum(i.file_size for i in candidates)
        if declared > self.limits.max_total_bytes:
            # Refused before reading a byte: the declared total alone is reason enough.
            return self._fail(
                f"The zip would unpack to {_mb(declared)}, over the "
                f"{_mb(self.limits.max_total_bytes)} limit. Split it into several uploads."
            )
        is_manifest = [PurePosixPath(i.filename).name.lower() == MANIFEST_NAME for i in candidates]
        manifests = [i for i, m in zip(candidates, is_manifest, strict=True) if m]
        images = [i for i, m in zip(candidates, is_manifest, strict=True) if not m]
        if len(images) > self.limits.max_entries:
            return self._fail(
                f"The zip holds {len(images):,} files, over the {self.limits.max_entries:,} "
                "image limit. Split it into several uploads."
            )
        rows, manifest_name = self._manifest(manifests, all_names)
        if manifest_name is None and self.default_origin is None:
            self.errors.append(
                "Choose whether the images are real or synthetic, or add a manifest.csv."
            )
        seen: dict[str, str] = {}
        for info in images:
            self._image(info, rows, manifest_name, seen)
        if not images and not self.errors:
            self.errors.append("The zip holds no images (PNG, JPEG or DICOM files).")
        return IngestReport(entries=self.entries, errors=self.errors)

    def _fail(self, message: str) -> IngestReport:
        return IngestReport(errors=[*self.errors, message])

    def _screen(self, infos: list[zipfile.ZipInfo]) -> tuple[list[zipfile.ZipInfo], set[str]]:
        """Directory checks: the regular files worth reading, and the name of every file."""
        candidates: list[zipfile.ZipInfo] = []
        all_names: set[str] = set()
        for info in infos:
            # orig_filename: zipfile cuts `filename` at a NUL, hiding part of what was sent.
            why = _unsafe_name(info.orig_filename)
            if why:
                self.errors.append(
                    f"{show_name(info.orig_filename)}: unsafe path in the zip ({why})."
                )
            elif stat.S_ISLNK(info.external_attr >> 16):
                self.errors.append(f"{show_name(info.filename)}: symbolic links are not allowed.")
            elif not (info.is_dir() or _ignored(info.filename)):
                problem = self._entry_problem(info, all_names)
                all_names.add(info.filename)
                if problem:
                    self.errors.append(f"{show_name(info.filename)}: {problem}")
                else:
                    candidates.append(info)
        return candidates, all_names

    def _entry_problem(self, info: zipfile.ZipInfo, names_so_far: set[str]) -> str | None:
        limits = self.limits
        if info.filename in names_so_far:
            return "appears more than once in the zip."
        if len(info.filename) > MAX_NAME:
            return f"the path is longer than {MAX_NAME} characters."
        if info.flag_bits & 0x1:
            return "is encrypted; upload a zip without a password."
        if info.compress_type not in _ALLOWED_COMPRESSION:
            return (
                f"uses compression method {info.compress_type}; re-create the zip with the "
                "standard (deflate) compression."
            )
        if info.file_size > limits.max_entry_bytes:
            return (
                f"is {_mb(info.file_size)} unpacked, over the {_mb(limits.max_entry_bytes)} limit."
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_min_bytes and ratio > limits.max_ratio:
            return (
                f"would expand {ratio:,.0f}:1 ({_mb(info.compress_size)} to "
                f"{_mb(info.file_size)}), over the {limits.max_ratio:,.0f}:1 limit for files "
                f"over {_mb(limits.ratio_min_bytes)}: this looks like a zip bomb."
            )
        return None

    def _manifest(
        self, manifests: list[zipfile.ZipInfo], all_names: set[str]
    ) -> tuple[dict[str, ManifestRow] | None, str | None]:
        """(rows by full zip path, manifest name); rows are None when the manifest is unusable,
        so images are not also reported as missing from it."""
        if not manifests:
            return None, None
        if len(manifests) > 1:
            names = ", ".join(show_name(i.filename) for i in manifests)
            self.errors.append(f"The zip holds more than one {MANIFEST_NAME}: {names}.")
            return None, MANIFEST_NAME
        info = manifests[0]
        name = show_name(info.filename)
        if info.file_size > self.limits.max_manifest_bytes:
            self.errors.append(f"{name} is over {_mb(self.limits.max_manifest_bytes)}.")
            return None, name
        try:
            text = self._read(info)[0].decode("utf-8-sig")
        except _EntryError as exc:
            self.errors.append(f"{name}: {exc}")
            return None, name
        except UnicodeDecodeError:
            self.errors.append(f"{name} is not UTF-8 text; save it as 'CSV UTF-8'.")
            return None, name
        # Paths in the manifest are relative to its folder, so zipping a whole folder works.
        folder = PurePosixPath(info.filename).parent
        rows = parse_manifest(text, name, "" if folder.name == "" else f"{folder}/", self.errors)
        for path, row in (rows or {}).items():
            if path not in all_names:
                self.errors.append(
                    f"{name} row {row.line}: {show_name(row.path)} is not in the zip."
                )
        return rows, name

    def _image(
        self,
        info: zipfile.ZipInfo,
        rows: dict[str, ManifestRow] | None,
        manifest_name: str | None,
        seen: dict[str, str],
    ) -> None:
        name = show_name(info.filename)
        row = rows.get(info.filename) if rows is not None else None
        problems_before = len(self.errors)
        if rows is not None and row is None:
            self.errors.append(f"{name}: not listed in {manifest_name}; every image needs a row.")
        try:
            # The first bytes decide: a 200 MB text file named .png is refused unread.
            head = self._read(info, _SNIFF_BYTES)[0]
            if sniff_format(head) is None:
                what = "empty file" if not head else "unrecognised content"
                self.errors.append(f"{name}: not a supported image (PNG, JPEG or DICOM): {what}")
                return
            data, digest = self._read(info)
        except _EntryError as exc:
            self.errors.append(f"{name}: {exc}")
            return
        if digest in seen:
            self.errors.append(f"{name}: same content as {show_name(seen[digest])}.")
            return
        seen[digest] = info.filename
        try:
            decoded = load_image(data, max_pixels=self.limits.max_pixels)
            if image_has_colour(data):
                # A colour image keeps its colours in the copy galleries show; what a
                # reader study serves is rendered apart (app/studies/display.py).
                rgb = load_rgb_image(data, max_pixels=self.limits.max_pixels)
                blinded = canonical_png_rgb(rgb, size=BLINDED_SIZE)
            else:
                blinded = canonical_png(decoded, size=BLINDED_SIZE)
        except MultiFrameError as exc:
            self.errors.append(f"{name}: DICOM with {exc.n_frames} frames; upload one per file.")
            return
        except ValueError as exc:  # ImageDecodeError is a ValueError with a user-safe reason
            reason = exc.reason if isinstance(exc, ImageDecodeError) else str(exc)
            self.errors.append(f"{name}: {reason}")
            return
        except Exception as exc:  # a decoder bug on one file must not hide the other problems
            log.warning("unexpected error decoding upload entry %r", info.filename, exc_info=True)
            self.errors.append(f"{name}: could not be decoded ({type(exc).__name__}).")
            return
        origin = row.origin if row is not None else self.default_origin
        if len(self.errors) > problems_before or origin is None:
            return  # a missing origin was reported once for the whole upload
        height, width = decoded.pixels.shape
        entry = IngestEntry(
            key=secrets.token_hex(16),
            name=info.filename,
            origin=origin,
            label=row.label if row else None,
            source=row.group if row else None,
            sha256=digest,
            source_format=decoded.meta.source_format,
            width=int(width),
            height=int(height),
            size_bytes=len(data),
        )
        self.entries.append(entry)
        if self.on_image is not None and not self.errors:
            self.on_image(entry, data, blinded)

    def _read(self, info: zipfile.ZipInfo, head: int | None = None) -> tuple[bytes, str]:
        """The entry's bytes and sha256, never more than its declared size: the directory checks
        trusted that size, so reading enforces it rather than trusting the stream. With `head`,
        only that many first bytes (and their hash)."""
        limit = min(info.file_size, self.limits.max_entry_bytes)
        wanted = limit + 1 if head is None else min(head, limit)
        buf = bytearray()
        digest = hashlib.sha256()
        try:
            with self.archive.open(info) as stream:
                while chunk := stream.read(min(_READ_CHUNK, wanted - len(buf))):
                    buf += chunk
                    digest.update(chunk)
                    if len(buf) > limit:
                        raise _EntryError(f"unpacks to more than the {limit:,} bytes declared.")
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise _EntryError(f"cannot be read from the zip ({exc}).") from exc
        except (NotImplementedError, RuntimeError) as exc:
            raise _EntryError(f"cannot be unpacked ({exc}).") from exc
        return bytes(buf), digest.hexdigest()


def _unsafe_name(name: str) -> str | None:
    if "\\" in name:
        return "it contains a backslash"
    if name.startswith("/"):
        return "it is an absolute path"
    if _DRIVE_LETTER.match(name):
        return "it starts with a drive letter"
    if ".." in name.split("/"):
        return "it contains a '..' component"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it contains control characters"
    return None


def _ignored(name: str) -> bool:
    parts = name.split("/")
    hidden = any(p.startswith(".") for p in parts)
    return parts[0] == "__MACOSX" or hidden or parts[-1].lower() in _JUNK_FILES


_EOCD = struct.Struct("<4s4H2LH")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_EOCD64_LOCATOR_SIZE = 20


def _directory_extent(fh: BinaryIO, size: int) -> tuple[int, int] | None:
    """(entries, central directory bytes) as the zip's end record declares them; None when it
    has no end record (not a zip). zipfile builds one object per directory entry as it opens a
    zip, so a crafted directory must be refused from these numbers first."""
    tail_len = min(size, _EOCD.size + 0xFFFF)  # the end record plus the longest comment
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + _EOCD.size > len(tail):
        return None
    fields = _EOCD.unpack_from(tail, pos)
    entries, directory_bytes = int(fields[4]), int(fields[5])
    locator_at = size - tail_len + pos - _EOCD64_LOCATOR_SIZE
    if (entries == 0xFFFF or directory_bytes == 0xFFFFFFFF) and locator_at >= _EOCD64.size:
        # Zip64: the real numbers sit in a record just before the locator.
        fh.seek(locator_at - _EOCD64.size)
        record = fh.read(_EOCD64.size + 4)
        if record[:4] == b"PK\x06\x06" and record[-4:] == b"PK\x06\x07":
            fields = _EOCD64.unpack(record[: _EOCD64.size])
            entries, directory_bytes = int(fields[7]), int(fields[8])
    return entries, directory_bytes


def _mb(n: int) -> str:
    for unit, size in (("GB", GiB), ("MB", MiB), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
