import pytest

from app.domain import ratings_import
from app.domain.ratings_import import ParsedRatings, parse_ratings_csv
from app.domain.statistics import Rating

GOOD = """reader,image,truth,answer,confidence,reason,source
r1,img1,real,real,0.9,clean texture,
r1,img2,fake,Generated,0.7,,ddpm-v2
r2,img1,real,UNCERTAIN,,,
r2,img2,Synthetic,fake,5,odd ribs,ddpm-v2
"""


def test_good_file_is_parsed_with_answers_mapped():
    parsed = parse_ratings_csv(GOOD)
    assert parsed.ok and parsed.errors == []
    assert parsed.ratings == [
        Rating("r1", "img1", "real", "real", 0.9, None),
        Rating("r1", "img2", "fake", "fake", 0.7, "ddpm-v2"),
        Rating("r2", "img1", "real", "uncertain", None, None),
        Rating("r2", "img2", "fake", "fake", 5.0, "ddpm-v2"),
    ]
    assert parsed.reasons == {("r1", "img1"): "clean texture", ("r2", "img2"): "odd ribs"}


def test_bom_semicolons_messy_headers_and_decimal_commas():
    text = "\ufeff Reader ;IMAGE; Truth ;Answer;Confidence\r\n"
    text += "r1;a;fake;fake;0,8\r\nr1;b;real;Real;1\r\n"
    parsed = parse_ratings_csv(text)
    assert parsed.ok, parsed.errors
    assert parsed.ratings == [
        Rating("r1", "a", "fake", "fake", 0.8),
        Rating("r1", "b", "real", "real", 1.0),
    ]


def test_required_columns_in_any_order_extra_columns_ignored():
    parsed = parse_ratings_csv("answer,notes,image,reader,truth\nfake,x,i1,r1,real\n")
    assert parsed.ok
    assert parsed.ratings == [Rating("r1", "i1", "real", "fake")]


def test_missing_columns_stop_before_any_row():
    parsed = parse_ratings_csv("reader,image,answer\nr1,i1,real\n")
    assert parsed == ParsedRatings([], ["Missing required column(s): truth"])
    assert not parsed.ok
    both = parse_ratings_csv("reader,image\nr1,i1\n")
    assert both.errors == ["Missing required column(s): truth, answer"]


def test_unknown_answer_and_truth():
    parsed = parse_ratings_csv(
        "reader,image,truth,answer\nr1,i1,real,maybe\nr1,i2,uncertain,real\n"
    )
    assert parsed.errors == [
        "Row 2: unknown answer 'maybe' (expected real, fake or uncertain)",
        "Row 3: unknown truth 'uncertain' (expected real or fake)",
    ]
    assert parsed.ratings == []


def test_duplicate_reader_image_pair_points_to_first_row():
    text = "reader,image,truth,answer\nr1,img1,real,real\nr1,img3,fake,fake\nr2,img3,fake,real\n"
    text += "r1,img3,fake,real\n"
    parsed = parse_ratings_csv(text)
    assert parsed.errors == ["Row 5: reader 'r1' already rated image 'img3' on row 3"]
    assert len(parsed.ratings) == 3  # previewable, yet not ok to import
    assert not parsed.ok


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("high", "Row 2: confidence 'high' is not a number"),
        ("-1", "Row 2: confidence '-1' must be a finite number >= 0"),
        ("nan", "Row 2: confidence 'nan' must be a finite number >= 0"),
        ("0,5", "Row 2: confidence '0,5' is not a number"),  # decimal comma only with ';'
    ],
)
def test_bad_confidence(value, message):
    parsed = parse_ratings_csv(f'reader,image,truth,answer,confidence\nr1,i1,real,real,"{value}"\n')
    assert parsed.errors == [message]


def test_all_problems_reported_at_once_with_spreadsheet_row_numbers():
    text = (
        "reader,image,truth,answer,confidence\n"
        "r1,img1,real,real,1\n"  # row 2: fine
        ",img2,fake,fake,\n"  # row 3
        "\n"  # row 4: blank, skipped but counted
        "r1,,real,real,\n"  # row 5
        "r1,img4,fake,maybe,lots\n"  # row 6: two problems
        "r1,img1,fake,fake,\n"  # row 7: duplicate of row 2
        "r2,img5,real,,,extra\n"  # row 8
    )
    parsed = parse_ratings_csv(text)
    assert parsed.errors == [
        "Row 3: empty reader",
        "Row 5: empty image",
        "Row 6: unknown answer 'maybe' (expected real, fake or uncertain)",
        "Row 6: confidence 'lots' is not a number",
        "Row 7: reader 'r1' already rated image 'img1' on row 2",
        "Row 8: 6 values but the header has 5 columns",
        "Row 8: empty answer",
    ]
    assert parsed.ratings == [Rating("r1", "img1", "real", "real", 1.0)]


def test_quoted_multiline_cell_counts_as_one_spreadsheet_row():
    text = 'reader,image,truth,answer,reason\nr1,i1,real,real,"two\nlines"\nr1,i2,real,wat,\n'
    parsed = parse_ratings_csv(text)
    assert parsed.errors == ["Row 3: unknown answer 'wat' (expected real, fake or uncertain)"]
    assert parsed.reasons == {("r1", "i1"): "two\nlines"}


def test_empty_and_header_only_files():
    assert parse_ratings_csv("\ufeff  \n").errors == ["The file is empty."]
    assert parse_ratings_csv("reader,image,truth,answer\n\n").errors == [
        "The file has a header but no data rows."
    ]


def test_duplicate_header_column_is_rejected():
    parsed = parse_ratings_csv("reader,image,truth,answer,Answer\nr1,i1,real,real,fake\n")
    assert parsed.errors == ["Column 'answer' appears more than once in the header"]


def test_row_cap(monkeypatch):
    monkeypatch.setattr(ratings_import, "MAX_ROWS", 3)
    header = "reader,image,truth,answer\n"
    rows = [f"r,i{i},real,real\n" for i in range(4)]
    assert parse_ratings_csv(header + "".join(rows[:3])).ok  # exactly at the cap
    assert parse_ratings_csv(header + "".join(rows)) == ParsedRatings(
        [], ["The file has more than 3 data rows; split it up."]
    )


def test_default_row_cap_message_is_readable():
    assert ratings_import.MAX_ROWS == 1_000_000
    assert f"{ratings_import.MAX_ROWS:,}" == "1,000,000"


def test_error_list_is_bounded_but_counts_the_rest(monkeypatch):
    monkeypatch.setattr(ratings_import, "MAX_LISTED_ERRORS", 2)
    rows = "".join(f"r,i{i},real,nope\n" for i in range(5))
    errors = parse_ratings_csv("reader,image,truth,answer\n" + rows).errors
    assert errors[:2] == [
        "Row 2: unknown answer 'nope' (expected real, fake or uncertain)",
        "Row 3: unknown answer 'nope' (expected real, fake or uncertain)",
    ]
    assert errors[2] == "... and 3 more problem(s) not listed."
