"""The FID options of a fidelity job: the Inception resize convention and the bootstrap."""

from __future__ import annotations

import pytest

from app.evaluation import options
from app.jobs.specs import SpecError
from ml.metrics.features import FID_CONVENTIONS, RESIZES


def test_fid_options_default_and_explicit() -> None:
    assert options.fid_options({}) == {"fid_resize": "antialias", "fid_resamples": 200}
    chosen = options.fid_options({"fid_resize": " Clean ", "fid_resamples": "0"})
    assert chosen == {"fid_resize": "clean", "fid_resamples": 0}


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"fid_resize": "bicubic"}, "fid_resize", "antialias, tf, clean"),
        ({"fid_resamples": "1"}, "fid_resamples", "0 (none) or at least 2"),
        ({"fid_resamples": "5000"}, "fid_resamples", "from 0 to 2000"),
    ],
)
def test_fid_option_errors_name_their_field(values, field, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError) as caught:
        options.fid_options(values)
    assert caught.value.field == field and message in caught.value.message


def test_web_side_lists_agree_with_the_extractor() -> None:
    # The web process cannot import ml.metrics.features (torch), so it keeps its own copy.
    assert options.FID_RESIZES == RESIZES
    assert set(options.FID_RESIZE_LABELS) == set(FID_CONVENTIONS)
