"""Parse ratings collected outside the app (a spreadsheet, a paper form typed up) from CSV.

Nothing is raised for bad input: every problem is collected with the row number a spreadsheet
shows (the header is row 1), so the uploader can fix the whole file in one go. A file with any
problem must be rejected as a whole by the caller (``ParsedRatings.ok``); importing the good
rows of a bad file would leave a study with a silent hole in it.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.domain.ratings import Answer, Rating, Truth

REQUIRED_COLUMNS = ("reader", "image", "truth", "answer")
OPTIONAL_COLUMNS = ("confidence", "reason", "source")
MAX_ROWS = 1_000_000
# Past this many, more messages help nobody; the count of the rest is still reported.
MAX_LISTED_ERRORS = 1000

# Other tools call synthetic images "generated" or "synthetic"; both mean fake here.
_ANSWERS: dict[str, Answer] = {
    "real": "real",
    "fake": "fake",
    "generated": "fake",
    "synthetic": "fake",
    "uncertain": "uncertain",
}
_TRUTHS: dict[str, Truth] = {k: v for k, v in _ANSWERS.items() if v != "uncertain"}
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class ParsedRatings:
    """Ratings from every valid row, and every problem found.

    ``ratings`` holds the valid rows even when there are errors, so a caller can preview what
    would be imported; it must still import nothing unless ``ok``.
    """

    ratings: list[Rating]
    errors: list[str]
    # Free-text reasons by (reader, image): Rating has no field for them.
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _delimiter(header_line: str) -> str:
    try:
        return csv.Sniffer().sniff(header_line, delimiters=",;").delimiter
    except csv.Error:
        # A single-column header has no delimiter to find; the missing-column check explains.
        return ","


def _confidence(value: str, delimiter: str) -> tuple[float | None, str | None]:
    if not value:
        return None, None
    # Spreadsheets in locales that export with ';' write decimals as "0,8".
    text = (
        value.replace(",", ".") if delimiter == ";" and _DECIMAL_COMMA.fullmatch(value) else value
    )
    try:
        number = float(text)
    except ValueError:
        return None, f"confidence {value!r} is not a number"
    if not math.isfinite(number) or number < 0:
        return None, f"confidence {value!r} must be a finite number >= 0"
    return number, None


class _Errors:
    """Keeps the first MAX_LISTED_ERRORS messages and counts the rest, bounding memory."""

    def __init__(self) -> None:
        self.listed: list[str] = []
        self.unlisted = 0

    def add(self, message: str) -> None:
        if len(self.listed) < MAX_LISTED_ERRORS:
            self.listed.append(message)
        else:
            self.unlisted += 1

    def result(self) -> list[str]:
        if self.unlisted:
            return [*self.listed, f"... and {self.unlisted} more problem(s) not listed."]
        return list(self.listed)


def _header_index(header: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    index: dict[str, int] = {}
    problems: list[str] = []
    for i, raw in enumerate(header):
        name = raw.strip().lower()
        if not name:
            continue
        if name in index:
            problems.append(f"Column {name!r} appears more than once in the header")
        else:
            index[name] = i
    missing = [c for c in REQUIRED_COLUMNS if c not in index]
    if missing:
        problems.insert(0, f"Missing required column(s): {', '.join(missing)}")
    return index, problems


def _read_row(
    cells: Sequence[str], index: dict[str, int], width: int, delimiter: str
) -> tuple[dict[str, str], float | None, list[str]]:
    """Trimmed values by column name, the parsed confidence, and the row's own problems."""
    values = {name: cells[i].strip() if i < len(cells) else "" for name, i in index.items()}
    problems: list[str] = []
    if any(c.strip() for c in cells[width:]):
        problems.append(f"{len(cells)} values but the header has {width} columns")
    problems += [f"empty {column}" for column in REQUIRED_COLUMNS if not values[column]]
    if values["truth"] and values["truth"].lower() not in _TRUTHS:
        problems.append(f"unknown truth {values['truth']!r} (expected real or fake)")
    if values["answer"] and values["answer"].lower() not in _ANSWERS:
        problems.append(f"unknown answer {values['answer']!r} (expected real, fake or uncertain)")
    confidence, confidence_problem = _confidence(values.get("confidence", ""), delimiter)
    if confidence_problem:
        problems.append(confidence_problem)
    return values, confidence, problems


def _unclosed_quote_line(text: str, delimiter: str, record_start: int) -> int:
    """The physical line where the quote that is never closed opens, in the record that
    begins on line ``record_start`` and runs to the end of the file."""
    lines = io.StringIO(text, newline="")
    offset = sum(len(next(lines)) for _ in range(record_start - 1))
    # Read leniently, the record runs to the end of the file with the open quote's value last;
    # the values before it are complete and hold the record's only line breaks before it.
    cells = next(csv.reader(io.StringIO(text[offset:], newline=""), delimiter=delimiter))
    return record_start + sum(len(_LINE_BREAK.findall(cell)) for cell in cells[:-1])


def parse_ratings_csv(text: str) -> ParsedRatings:
    """Parse a CSV with columns reader, image, truth, answer and optionally confidence,
    reason and source (any case, any order, extra columns ignored).

    Comma or semicolon delimited (sniffed from the header line), UTF-8 BOM tolerated. Answers
    are real / fake / uncertain and truths real / fake, in any case; "generated" and
    "synthetic" count as fake. Blank rows are skipped but still counted in row numbers.
    """
    text = text.removeprefix("\ufeff")
    if not text.strip():
        return ParsedRatings([], ["The file is empty."])
    delimiter = _delimiter(text.splitlines()[0])
    # strict: a quote left open at the end of the file is an error, not one last value that
    # quietly swallows every row after it (which imported only the rows before the quote).
    records = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    errors = _Errors()
    ratings: list[Rating] = []
    reasons: dict[tuple[str, str], str] = {}
    first_row: dict[tuple[str, str], int] = {}
    row_no = 1  # the spreadsheet row being read; the header is row 1
    record_start = 1  # the physical line where the record being read begins
    try:
        header = next(records)
        index, header_problems = _header_index(header)
        if header_problems:
            # Without a sound header no row can be read reliably, so none is.
            return ParsedRatings([], header_problems)
        for row_no in itertools.count(2):
            record_start = records.line_num + 1
            cells = next(records, None)
            if cells is None:
                break
            if row_no - 1 > MAX_ROWS:
                message = f"The file has more than {MAX_ROWS:,} data rows; split it up."
                return ParsedRatings([], [message])
            if not any(c.strip() for c in cells):
                continue
            values, confidence, problems = _read_row(cells, index, len(header), delimiter)
            reader, image = values["reader"], values["image"]
            if reader and image:
                earlier = first_row.setdefault((reader, image), row_no)
                if earlier != row_no:
                    problems.append(
                        f"reader {reader!r} already rated image {image!r} on row {earlier}"
                    )
            for problem in problems:
                errors.add(f"Row {row_no}: {problem}")
            if problems:
                continue
            truth, answer = _TRUTHS[values["truth"].lower()], _ANSWERS[values["answer"].lower()]
            source = values.get("source") or None
            ratings.append(Rating(reader, image, truth, answer, confidence, source))
            if values.get("reason"):
                reasons[(reader, image)] = values["reason"]
    except csv.Error as exc:
        if str(exc) != "unexpected end of data":
            errors.add(f"Row {row_no}: the file cannot be read as CSV from here on ({exc})")
        else:
            line = _unclosed_quote_line(text, delimiter, record_start)
            # One bad quote spoils everything after it, so no row of the file is kept.
            message = (
                f'Line {line}: a quoted value opens here and its closing quote (") is missing, '
                "so the rest of the file would be read as that one value; close or remove it."
            )
            return ParsedRatings([], [message])
    # Every non-blank row either is recorded in first_row or produced an error.
    if not first_row and not errors.listed:
        errors.add("The file has a header but no data rows.")
    return ParsedRatings(ratings, errors.result(), reasons)
