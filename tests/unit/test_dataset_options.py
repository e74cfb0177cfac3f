"""Import / subset options: one parser for the form and the CLI, errors naming the field."""

from __future__ import annotations

import pytest

from app.datasets.options import (
    parse_import_options,
    parse_name,
    parse_resolutions,
    parse_subset_options,
)
from app.jobs.specs import SpecError


def test_resolutions_accept_commas_and_spaces_sorted_unique() -> None:
    assert parse_resolutions("64, 32,32  128") == (32, 64, 128)
    assert parse_resolutions([256]) == (256,)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "at least one"),
        ("32,abc", "not a whole number"),
        ("2", "between 4"),
        ("4096", "between 4"),
        ("8,16,32,64,128,256,512", "At most 6"),
    ],
)
def test_bad_resolutions(raw: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        parse_resolutions(raw)
    assert info.value.field == "resolutions"


def test_import_options_normalise_and_carry_format_options() -> None:
    options = parse_import_options(
        "CheXpert", resolutions="32", uncertain="U-Ones", window="", seed="7", rule="crop"
    )
    assert options.format == "chexpert" and options.uncertain == "u-ones"
    assert options.format_options == {"policy": "u-ones"} and options.window is None
    assert options.as_params()["rule"] == "crop" and options.seed == 7
    assert parse_import_options("dicom_csv", window="Brain").window == "brain"
    stack = parse_import_options("rsna", window=" Stack ")
    assert stack.window == "stack" and stack.as_params()["window"] == "stack"
    assert parse_import_options("folder").format_options == {}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fmt": "nifti"}, "format"),
        ({"fmt": "folder", "uncertain": "maybe"}, "uncertain"),
        ({"fmt": "rsna", "window": "mediastinum"}, "window"),
        ({"fmt": "folder", "seed": "-1"}, "seed"),
        ({"fmt": "folder", "rule": "stretch"}, "rule"),
    ],
)
def test_bad_import_options_name_their_field(kwargs: dict, field: str) -> None:
    fmt = kwargs.pop("fmt")
    with pytest.raises(SpecError) as info:
        parse_import_options(fmt, **kwargs)
    assert info.value.field == field


def test_names_and_subset_options() -> None:
    assert parse_name("  CheXpert   small ") == "CheXpert small"
    for bad in ("", "   ", "x" * 201, "nul\x00here"):
        with pytest.raises(SpecError):
            parse_name(bad)
    opts = parse_subset_options("samples-per-class", "50", seed="1", available=(32, 64))
    assert (opts.kind, opts.value, opts.seed, opts.resolutions) == (
        "samples_per_class",
        50,
        1,
        None,
    )
    assert parse_subset_options("all", None, resolutions="32", available=(32, 64)).value == 0
    with pytest.raises(SpecError, match="not stored") as info:
        parse_subset_options("classes", 2, resolutions="128", available=(32, 64))
    assert info.value.field == "resolutions"
    with pytest.raises(SpecError) as info:
        parse_subset_options("classes", "0")
    assert info.value.field == "value"
