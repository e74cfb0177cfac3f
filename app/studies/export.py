"""Exports of a study: long CSV (one row per answer), iMRMC input, statistics JSON.

All three are built from plain rows and ratings (see app/studies/ratings.py), so they can be
tested without a database and the web and the CLI produce the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from app.domain.ratings import Rating, fake_score, first_presentations
from app.studies.ratings import ANSWER_COLUMNS, natural_key

# OWASP "CSV injection": a spreadsheet runs a cell starting with one of these as a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

IMRMC_MODALITY = "A"
# The classic iMRMC convention for truth rows (reader -1, modality 0); both the Java app and
# RJafroc's ReadImrmc recognise reader -1 and ignore the modality of truth rows.
IMRMC_TRUTH_READER = "-1"
IMRMC_TRUTH_MODALITY = "0"
_ANSWER_ONLY_SCORE = {"real": -1.0, "uncertain": 0.0, "fake": 1.0}
# Header text must not contain "N0:", "NR:", ... (iMRMC searches every header line for them,
# case-insensitively) nor end in a comma (iMRMC strips it), so names are reduced to this set.
_UNSAFE_HEADER_CHARS = re.compile(r"[^A-Za-z0-9 _.()-]")


def csv_safe(value: object) -> str:
    """One cell as text that a spreadsheet shows rather than evaluates."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, float) and value.is_integer():
        # Confidence is stored as a float: a 1-5 rating of 4 reads "4", as the reader gave it.
        text = str(int(value))
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def answers_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] = ANSWER_COLUMNS) -> str:
    """Long format: a header, then one row per answer, every cell made formula-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_safe(row.get(column)) for column in columns])
    return buffer.getvalue()


def _header_safe(text: str) -> str:
    return _UNSAFE_HEADER_CHARS.sub("_", text).strip() or "_"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def imrmc_scoring(ratings: Sequence[Rating]) -> str:
    """Which score the iMRMC export uses: "confidence" or "answer"."""
    first = first_presentations(ratings)
    return "confidence" if all(fake_score(r) is not None for r in first) else "answer"


def imrmc_text(ratings: Sequence[Rating], *, title: str = "synthbench reader study") -> str:
    """iMRMC input: a header block, ``BEGIN DATA:``, then ``readerID,caseID,modalityID,score``.

    Truth rows come first, one per case: reader -1, modality 0, score 1 for a synthetic image
    (the "signal" is being fake) and 0 for a real one. Then one row per reader and case in
    modality A. Reader and case IDs are integers numbered from 1 in sorted order, because
    RJafroc's reader rejects anything else; the header lists which pseudonym and which image
    label each number stands for. Only first presentations are written: iMRMC refuses a second
    score for one reader, case and modality.

    The score is "how fake" on one axis: +confidence for a fake answer, -confidence for a real
    one, 0 for uncertain (app.domain.statistics.fake_score). When any real/fake answer lacks a
    confidence, every score is the answer alone (-1 real, 0 uncertain, +1 fake) so one file
    never mixes two scales.
    """
    first = first_presentations(ratings)
    truth: dict[str, str] = {}
    for r in first:
        if truth.setdefault(r.image, r.truth) != r.truth:
            raise ValueError(f"image {r.image!r} is marked both real and fake")
    readers = sorted({r.reader for r in first}, key=natural_key)
    cases = sorted(truth, key=natural_key)
    reader_id = {name: i for i, name in enumerate(readers, start=1)}
    case_id = {image: k for k, image in enumerate(cases, start=1)}
    scoring = imrmc_scoring(first)

    def score(r: Rating) -> float:
        value = fake_score(r) if scoring == "confidence" else None
        return value if value is not None else _ANSWER_ONLY_SCORE[r.answer]

    lines = [
        _header_safe(title),
        f"NR: {len(readers)}",
        f"N0: {sum(t == 'real' for t in truth.values())}",
        f"N1: {sum(t == 'fake' for t in truth.values())}",
        "NM: 1",
        "",
        "Exported by synthbench. Truth 1 = synthetic (fake) and 0 = real.",
        f"Modality {IMRMC_MODALITY} = the reader study. Higher score = judged more likely fake.",
        "Score = +confidence for fake, -confidence for real, 0 for uncertain."
        if scoring == "confidence"
        else "Score = +1 for fake, -1 for real, 0 for uncertain (no confidence recorded).",
        *(f"reader {reader_id[name]} = {_header_safe(name)}" for name in readers),
        *(f"case {case_id[image]} = {_header_safe(image)}" for image in cases),
        "",
        "BEGIN DATA:",
    ]
    lines += [
        f"{IMRMC_TRUTH_READER},{case_id[image]},{IMRMC_TRUTH_MODALITY},"
        f"{1 if truth[image] == 'fake' else 0}"
        for image in cases
    ]
    ordered = sorted(first, key=lambda r: (reader_id[r.reader], case_id[r.image]))
    lines += [
        f"{reader_id[r.reader]},{case_id[r.image]},{IMRMC_MODALITY},{_number(score(r))}"
        for r in ordered
    ]
    return "\n".join(lines) + "\n"


def statistics_json(stats: Mapping[str, Any], *, study: Mapping[str, Any]) -> str:
    """The statistics as shown on the results page, plus which study they describe."""
    # allow_nan=False: a NaN would make the file unreadable for strict JSON parsers.
    return json.dumps({"study": dict(study), **stats}, indent=2, allow_nan=False)
