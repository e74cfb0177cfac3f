"""What a job left in its artefact folder: the file list and the tail of its log."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ml import run_folder

MAX_LISTED = 200
TAIL_LINES = 40
# Enough for 40 lines of a metrics log; reading from the end keeps a long run's page cheap.
TAIL_BYTES = 64 * 1024
MAX_LINE_CHARS = 400
# A human-written log wins over the per-tick metrics when a job has both.
LOG_NAMES = (run_folder.LOG, run_folder.METRICS)


@dataclass(frozen=True)
class Artefact:
    path: str  # relative to the folder, with '/' separators: the download route's path
    size: int


@dataclass(frozen=True)
class Listing:
    files: list[Artefact]
    truncated: bool


@dataclass(frozen=True)
class LogTail:
    name: str
    lines: list[str]


def list_artefacts(folder: str | None, limit: int = MAX_LISTED) -> Listing:
    """Regular files under `folder`, sorted by path, at most `limit` of them."""
    root = Path(folder) if folder else None
    if root is None or not root.is_dir():
        return Listing([], False)
    files: list[Artefact] = []
    for directory, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(directory) / name
            # Links are left out: the download route refuses any that leave the folder anyway.
            if path.is_symlink() or not path.is_file():
                continue
            if len(files) == limit:
                return Listing(files, True)
            try:
                size = path.stat().st_size
            except OSError:  # a running job replaced or removed it since the walk saw it
                continue
            files.append(Artefact(path.relative_to(root).as_posix(), size))
    return Listing(files, False)


def artefact_file(folder: str | None, path: str) -> Path | None:
    """The regular file at `path` inside `folder`, or None: a path that leaves the folder
    (through '..' or a link) or that no file system can hold (a NUL byte) names no file."""
    if not folder or "\0" in path:
        # resolve() raises ValueError on a NUL byte (a 500 before this), where no file can be.
        return None
    root = Path(folder).resolve()
    # resolve() follows links, so neither '..' nor a symlink can leave the job's folder.
    target = (root / path).resolve()
    return target if target.is_relative_to(root) and target.is_file() else None


def log_tail(folder: str | None, lines: int = TAIL_LINES) -> LogTail | None:
    root = Path(folder) if folder else None
    if root is None:
        return None
    for name in LOG_NAMES:
        path = root / name
        if path.is_file() and not path.is_symlink():
            return LogTail(name, _last_lines(path, lines))
    return None


def _last_lines(path: Path, count: int) -> list[str]:
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_BYTES)
        fh.seek(start)
        text = fh.read().decode("utf-8", errors="replace")
    lines = text.splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line was cut by the seek
    return [_clip(line) for line in lines[-count:]]


def _clip(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " …"
