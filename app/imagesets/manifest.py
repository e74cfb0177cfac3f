"""Parse an upload's manifest.csv: one row per image naming its file, source (real or synthetic),
and optional label and group. Problems are appended to the caller's error list, each naming the
row, so an upload reports every mistake at once."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from app.models.imageset import Origin

MANIFEST_NAME = "manifest.csv"
MAX_TEXT = 200  # width of Image.label and Image.source
_ORIGINS = {"real": Origin.real, "synthetic": Origin.synthetic}
_ORIGINS |= {"generated": Origin.synthetic, "fake": Origin.synthetic}


@dataclass(frozen=True, slots=True)
class ManifestRow:
    line: int
    path: str  # as written in the manifest, relative to the manifest's folder
    origin: Origin | None  # None: the row has a problem, already reported
    label: str | None
    group: str | None


def parse_manifest(
    text: str, name: str, prefix: str, errors: list[str]
) -> dict[str, ManifestRow] | None:
    # Spreadsheets in many locales save "CSV" with semicolons; tabs come from copy-paste.
    delimiter = max((",", ";", "\t"), key=text.split("\n", 1)[0].count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: dict[str, ManifestRow] = {}
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in ("file", "source") if c not in header]
        if missing:
            errors.append(
                f"{name}: missing required column(s) {', '.join(missing)} (the header has "
                f"{', '.join(h for h in header if h) or 'nothing'}); the columns are "
                "file,source,label,group."
            )
            return None
        for cells in reader:
            if any(c.strip() for c in cells):
                values = dict(zip(header, (c.strip() for c in cells), strict=False))
                row = _manifest_row(values, reader.line_num, name, errors)
                if row is None:
                    continue
                if prefix + row.path in rows:
                    first = rows[prefix + row.path].line
                    errors.append(
                        f"{name} row {row.line}: {show_name(row.path)} is listed twice (first on "
                        f"row {first})."
                    )
                else:
                    rows[prefix + row.path] = row
    except csv.Error as exc:
        errors.append(f"{name} line {reader.line_num}: not valid CSV ({exc}).")
        return None
    return rows


def _manifest_row(
    values: dict[str, str], line: int, name: str, errors: list[str]
) -> ManifestRow | None:
    path = values.get("file", "").replace("\\", "/").removeprefix("./")
    if not path:
        errors.append(f"{name} row {line}: the file column is empty.")
        return None
    source = values.get("source", "")
    origin = _ORIGINS.get(source.lower())
    problems = [
        f"{name} row {line}: {column} is longer than {MAX_TEXT} characters."
        for column in ("label", "group")
        if len(values.get(column, "")) > MAX_TEXT
    ]
    if origin is None:
        what = f"unknown source {source!r}" if source else "the source column is empty"
        problems.insert(
            0,
            f"{name} row {line}: {what} for {show_name(path)}; use real or synthetic "
            "(generated and fake also mean synthetic).",
        )
    errors.extend(problems)
    # A row with a problem still names its file, so that file is not "missing from the manifest".
    label, group = values.get("label") or None, values.get("group") or None
    return ManifestRow(line, path, None if problems else origin, label, group)


def show_name(name: str) -> str:
    """A client-chosen file name made safe to quote in an error message (ingest uses it too)."""
    # repr() makes control characters and odd whitespace visible; very long names are cut.
    shown = name if name.isprintable() else repr(name)
    return shown if len(shown) <= 160 else shown[:157] + "..."
