"""Reading iMRMC input files: the Van Dyke reference file, synthbench's own export, bad files."""

from __future__ import annotations

from pathlib import Path

from app.domain.imrmc_format import (
    header_labels,
    looks_like_imrmc,
    parse_imrmc,
    ratings_from_imrmc,
)
from app.domain.mrmc_design import mrmc_design
from app.domain.ratings import Rating
from app.studies.export import imrmc_text

DATA = Path(__file__).parent.parent / "data" / "VanDyke.imrmc"


def test_reference_file_reads_completely() -> None:
    parsed = parse_imrmc(DATA.read_text())
    assert parsed.ok and parsed.title == "Van Dyke Data File"
    assert parsed.modalities == ["0", "1"] and parsed.readers == ["0", "1", "2", "3", "4"]
    assert len(parsed.observations) == 2 * 5 * 114
    assert sum(parsed.truth.values()) == 45 and len(parsed.truth) == 114
    first = parsed.observations[0]
    assert (first.reader, first.case, first.modality, first.score, first.line) == (
        "0", "1", "0", 1.0, 121,
    )  # fmt: skip


def test_several_modalities_become_sources_read_on_the_same_cases() -> None:
    text = DATA.read_text()
    ratings = ratings_from_imrmc(parse_imrmc(text), text)
    assert {r.source for r in ratings} == {"0", "1"}
    assert ratings[0] == Rating("0", "1@0", "real", "fake", 1.0, "0")
    design, reason = mrmc_design(ratings)
    assert reason is None and design is not None and design.design == "modalities"
    assert design.data.factorial and design.data.scores.shape == (2, 5, 114)
    assert "fully crossed" in design.methods


def test_round_trip_of_synthbench_export_keeps_names_and_answers() -> None:
    original = [
        Rating("alice", "img1", "real", "real", 4.0),
        Rating("alice", "img2", "fake", "fake", 2.5),
        Rating("alice", "img3", "fake", "uncertain", 1.0),
        Rating("bob", "img1", "real", "fake", 1.0),
        Rating("bob", "img2", "fake", "real", 3.0),
        Rating("bob", "img3", "fake", "fake", 5.0),
    ]
    text = imrmc_text(original, title="round trip")
    assert looks_like_imrmc(text)
    assert header_labels(text)["reader"] == {"1": "alice", "2": "bob"}
    back = ratings_from_imrmc(parse_imrmc(text), text)
    expected = [r if r.answer != "uncertain" else Rating(r.reader, r.image, r.truth, r.answer)
                for r in original]  # fmt: skip
    assert sorted(back, key=lambda r: (r.reader, r.image)) == expected


def test_bad_files_name_the_line() -> None:
    assert parse_imrmc("reader,image,truth\n1,2,real\n").errors == [
        "No 'BEGIN DATA:' line: this is not an iMRMC input file."
    ]
    text = "\n".join([
        "title", "NR: 3", "N0: 1", "N1: 1", "BEGIN DATA:",
        "-1,1,0,0", "-1,2,0,1", "-1,2,0,0",  # line 8: second truth for case 2
        "1,1,A,0.5", "1,1,A,0.7",  # line 10: duplicate observation
        "1,2,A,high",  # line 11: not a number
        "2,3,A,1",  # line 12: case 3 has no truth
        "2,1,A",  # line 13: three fields
        "-1,4,0,2",  # line 14: truth not 0/1
    ])  # fmt: skip
    errors = parse_imrmc(text).errors
    assert errors[:5] == [
        "Line 8: case '2' already has a truth on line 7",
        "Line 10: reader '1' already scored case '1' in modality 'A' on line 9",
        "Line 11: score 'high' is not a finite number",
        "Line 13: expected readerID,caseID,modalityID,score, got '2,1,A'",
        "Line 14: truth of case '4' must be 0 or 1",
    ]
    assert "Line 12: case '3' has no truth row (reader -1)" in errors
    assert "Line 2: the header declares NR: 3 but the data have 2" in errors


def test_begin_data_without_scores_is_an_error() -> None:
    assert parse_imrmc("t\nBEGIN DATA:\n-1,1,0,1\n").errors == [
        "Line 2: 'BEGIN DATA:' is followed by no reader scores"
    ]
