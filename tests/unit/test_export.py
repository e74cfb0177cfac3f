"""Study exports without a database: CSV injection, the long CSV, iMRMC input, statistics JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from app.domain.statistics import Rating, study_statistics
from app.studies.export import answers_csv, csv_safe, imrmc_text, statistics_json
from app.studies.ratings import ANSWER_COLUMNS


@pytest.mark.parametrize(
    "dangerous",
    ["=1+1", "+SUM(A1)", "-2+3", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("http://x")'],
)
def test_cells_that_a_spreadsheet_would_evaluate_get_a_leading_quote(dangerous: str) -> None:
    assert csv_safe(dangerous) == "'" + dangerous


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("looks real", "looks real"),
        ("a=b", "a=b"),  # only the first character matters
        (None, ""),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (0.25, "0.25"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05+00:00"),
    ],
)
def test_harmless_cells_are_unchanged(value: object, text: str) -> None:
    assert csv_safe(value) == text


def _row(**values: object) -> dict[str, object]:
    return {**dict.fromkeys(ANSWER_COLUMNS), **values}


def test_long_csv_has_every_column_and_escapes_user_text() -> None:
    rows = [
        _row(reader="R01", image="img3", truth="fake", answer="fake", confidence=4.0,
             reason="=cmd|' /C calc'!A0", position=0, repeat=False, practice=False),
        _row(reader="@R02", image="img4", truth="real", answer="real",
             reason="two lines,\nwith a comma", position=1, repeat=True, practice=True,
             duration_ms=1234),
    ]  # fmt: skip
    table = list(csv.reader(io.StringIO(answers_csv(rows), newline="")))
    assert tuple(table[0]) == ANSWER_COLUMNS
    assert len(table) == 1 + len(rows)
    first, second = (dict(zip(table[0], r, strict=True)) for r in table[1:])
    assert first["reason"] == "'=cmd|' /C calc'!A0"
    assert first["confidence"] == "4" and first["repeat"] == "false"  # as the reader gave it
    assert first["source_set"] == "" and first["shown_at"] == ""
    assert second["reader"] == "'@R02"
    assert second["reason"] == "two lines,\nwith a comma"  # quoted, not split into two rows
    assert second["practice"] == "true" and second["duration_ms"] == "1234"


def _r(reader: str, image: str, truth: str, answer: str, confidence: float | None = None,
       repeat: bool = False) -> Rating:  # fmt: skip
    return Rating(reader, image, truth, answer, confidence, repeat=repeat)  # type: ignore[arg-type]


HAND_BUILT = [
    _r("R02", "img10", "fake", "fake", 4),
    _r("R02", "img2", "real", "uncertain", 2),
    _r("R01", "img10", "fake", "real", 3),
    _r("R01", "img2", "real", "real", 5),
    _r("R01", "img10", "fake", "fake", 2, repeat=True),  # a repeat: iMRMC takes one score
    _r("R01", "img1", "fake", "fake", 1.5),
]


def test_imrmc_input_for_a_hand_built_case() -> None:
    # Worked by hand: cases numbered in natural order img1, img2, img10; readers R01, R02.
    # Score = +confidence for fake, -confidence for real, 0 for uncertain.
    expected_data = [
        "BEGIN DATA:",
        "-1,1,0,1",  # img1 synthetic
        "-1,2,0,0",  # img2 real
        "-1,3,0,1",  # img10 synthetic
        "1,1,A,1.5",  # R01 img1 fake 1.5
        "1,2,A,-5",  # R01 img2 real 5
        "1,3,A,-3",  # R01 img10 real 3 (the repeat, fake 2, is left out)
        "2,2,A,0",  # R02 img2 uncertain
        "2,3,A,4",  # R02 img10 fake 4
    ]
    text = imrmc_text(HAND_BUILT, title="study 7")
    lines = text.splitlines()
    assert text.endswith("\n")
    assert lines[:5] == ["study 7", "NR: 2", "N0: 1", "N1: 2", "NM: 1"]
    begin = lines.index("BEGIN DATA:")
    assert lines[begin:] == expected_data
    header = lines[5:begin]
    assert "reader 1 = R01" in header and "reader 2 = R02" in header
    cases = [h for h in header if h.startswith("case ")]
    assert cases == ["case 1 = img1", "case 2 = img2", "case 3 = img10"]


def test_imrmc_without_confidence_scores_the_answer_alone_and_keeps_the_header_parseable() -> None:
    ratings = [
        _r("scan1: Dr, X", "a", "real", "fake"),
        _r("scan1: Dr, X", "b", "fake", "uncertain", 3),
        _r("scan1: Dr, X", "c", "fake", "real"),
    ]
    lines = imrmc_text(ratings, title="N0: 99, bad,").splitlines()
    begin = lines.index("BEGIN DATA:")
    assert lines[begin + 4 :] == ["1,1,A,1", "1,2,A,0", "1,3,A,-1"]
    # iMRMC looks for "N0:", "N1:", "NR:", "NM:" anywhere in a header line, in any case, and
    # strips a trailing comma: only the four count lines may carry such tags.
    tagged = [h for h in lines[:begin] if any(t in h.upper() for t in ("N0:", "N1:", "NR:", "NM:"))]
    assert tagged == ["NR: 1", "N0: 1", "N1: 2", "NM: 1"]
    assert not any(h.endswith(",") for h in lines[:begin])
    assert all(len(row.split(",")) == 4 for row in lines[begin + 1 :])


def test_imrmc_refuses_an_image_that_is_both_real_and_fake() -> None:
    with pytest.raises(ValueError, match="both real and fake"):
        imrmc_text([_r("R1", "x", "real", "real"), _r("R2", "x", "fake", "real")])


def test_statistics_json_is_strict_json_with_the_study() -> None:
    truths = {"a": "real", "b": "real", "c": "fake", "d": "fake"}
    answers = {"R1": "real fake fake uncertain", "R2": "uncertain real real fake",
               "R3": "real real fake real"}  # fmt: skip
    ratings = [
        _r(reader, image, truths[image], answer, 3)
        for reader, line in answers.items()
        for image, answer in zip(truths, line.split(), strict=True)
    ]
    stats = study_statistics(ratings)
    assert stats["pooled"]["method"].startswith("two-way crossed random effects")
    data = json.loads(statistics_json(stats, study={"id": 7, "name": "s", "kind": "imported"}))
    assert data.pop("study") == {"id": 7, "name": "s", "kind": "imported"}
    assert data == json.loads(json.dumps(stats))
