"""Malformed CSV is refused as a whole: a quote left open must not swallow the rows after it."""

import pytest

from app.domain.ratings_import import parse_ratings_csv

HEADER = "reader,image,truth,answer,reason\n"


def _unclosed(line: int) -> str:
    return (
        f'Line {line}: a quoted value opens here and its closing quote (") is missing, '
        "so the rest of the file would be read as that one value; close or remove it."
    )


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_unterminated_quote_refuses_the_whole_file_at_the_line_it_opens(ending: str) -> None:
    rows = ["r1,a,real,real,fine", 'r1,b,fake,fake,"odd ribs', "r1,c,real,real,", "r2,a,real,fake,"]
    parsed = parse_ratings_csv(ending.join([HEADER.strip(), *rows]) + ending)
    # Non-strict csv read this as two valid rows, the second with the rest of the file as its
    # reason: the import stored rows 2 and 3 and silently dropped the others.
    assert parsed.errors == [_unclosed(3)]
    assert parsed.ratings == [] and not parsed.ok


def test_the_line_counts_closed_multiline_values_before_the_open_quote() -> None:
    text = HEADER + 'r1,a,real,real,"two\nlines"\n' + 'r1,b,real,fake,"also\ntwo",x,"open\nr1,c\n'
    # Lines: 1 header, 2-3 row a, 4-5 row b's closed value, the open quote on line 5.
    assert parse_ratings_csv(text).errors == [_unclosed(5)]


def test_unterminated_quote_on_the_last_line_without_a_newline() -> None:
    parsed = parse_ratings_csv(HEADER + "r1,a,real,real,\n" + 'r1,b,real,fake,"no end')
    assert parsed.errors == [_unclosed(3)] and parsed.ratings == []


def test_unterminated_quote_in_the_header() -> None:
    assert parse_ratings_csv('reader,image,truth,"answer\nr1,a,real,real\n').errors == [
        _unclosed(1)
    ]


def test_text_after_a_closing_quote_is_refused_at_its_row() -> None:
    parsed = parse_ratings_csv(HEADER + "r1,a,real,real,\n" + 'r1,"b"c,real,real,\n')
    assert parsed.errors == [
        "Row 3: the file cannot be read as CSV from here on (',' expected after '\"')"
    ]
    assert not parsed.ok


def test_quotes_inside_values_and_doubled_quotes_still_read() -> None:
    text = HEADER + 'r1,a,real,real,"he said ""odd"""\n' + 'r1,b,real,fake,5" film\n'
    parsed = parse_ratings_csv(text)
    assert parsed.ok, parsed.errors
    assert parsed.reasons == {("r1", "a"): 'he said "odd"', ("r1", "b"): '5" film'}
