"""One display geometry for every source, a fixed-length PNG and a per-presentation dither."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from app.domain.blinding import encode_grey_png_stored, png_chunk_types, stored_png_length
from app.domain.display_geometry import (
    DITHER_MAX_CHANGE,
    DITHER_PSNR_DB,
    DITHER_SHARE,
    DisplayGeometry,
    dither,
    flat_border_lines,
    lowest_native,
    presentation_seed,
    render,
    square_side,
)


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.1, 0.9, width)[None, :] * np.linspace(0.5, 1.0, height)[:, None]
    return np.clip(ramp + rng.normal(0, 0.05, (height, width)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("shape", [(512, 512), (1, 1), (300, 200), (129, 511)])
def test_stored_png_length_depends_only_on_size(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    lengths = set()
    for pixels in (
        np.zeros(shape, np.uint8),
        np.full(shape, 255, np.uint8),
        rng.integers(0, 256, shape, dtype=np.uint8),
    ):
        data = encode_grey_png_stored(pixels)
        lengths.add(len(data))
        assert png_chunk_types(data) == ["IHDR", "IDAT", "IEND"]
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "L" and np.array_equal(np.asarray(im), pixels)
    assert lengths == {stored_png_length(shape[1], shape[0])}


def test_crop_leaves_no_border_whatever_the_aspect() -> None:
    geometry = DisplayGeometry(size=128, aspect="crop")
    for shape in ((300, 200), (200, 300), (96, 96), (1024, 700)):
        out = render(_texture(*shape), geometry)
        assert out.shape == (128, 128) and out.dtype == np.uint8
        assert flat_border_lines(out) == 0


def test_pad_leaves_black_bands_on_non_square_sources_only() -> None:
    geometry = DisplayGeometry(size=128, aspect="pad")
    wide = render(_texture(200, 400), geometry)  # half the height: 32 black rows each side
    assert flat_border_lines(wide) == pytest.approx(64, abs=2)
    assert (wide[:28] <= 2).all() and (wide[-28:] <= 2).all()  # Lanczos rings at the edge
    assert flat_border_lines(render(_texture(96, 96), geometry)) == 0


def test_crop_keeps_the_centre() -> None:
    pixels = np.zeros((100, 300), np.float32)
    pixels[:, 100:200] = 1.0  # the centre square is white, the sides black
    out = render(pixels, DisplayGeometry(size=100, aspect="crop"))
    assert (out == 255).all()


def test_native_matching_makes_sharpness_the_same_for_every_source() -> None:
    # A 96 px and a 384 px rendering of one scene: resampled each from its own resolution
    # they differ in high-frequency energy; brought to 96 px first, they match.
    fine = _texture(384, 384, seed=3)
    coarse = np.asarray(
        Image.fromarray(fine).resize((96, 96), Image.Resampling.LANCZOS), dtype=np.float32
    ).clip(0, 1)

    def detail(image: np.ndarray) -> float:
        return float(np.abs(np.diff(image.astype(np.float64), axis=1)).mean())

    sizes = [(384, 384), (96, 96)]
    assert lowest_native(sizes, "crop") == 96
    own = DisplayGeometry(size=256)
    matched = DisplayGeometry(size=256, native=lowest_native(sizes, "crop"))
    gap_own = abs(detail(render(fine, own)) - detail(render(coarse, own)))
    gap_matched = abs(detail(render(fine, matched)) - detail(render(coarse, matched)))
    assert gap_matched < gap_own / 5


def test_square_side_follows_the_aspect_rule() -> None:
    assert square_side(640, 480, "crop") == 480
    assert square_side(640, 480, "pad") == 640
    assert lowest_native([], "crop") is None


def test_dither_is_imperceptible_and_per_presentation() -> None:
    base = render(_texture(256, 256), DisplayGeometry(size=256))
    base[:4] = 0  # black and white lines: the dither turns inward there
    base[-4:] = 255
    first = dither(base, presentation_seed("presentation-one"))
    again = dither(base, presentation_seed("presentation-one"))
    repeat = dither(base, presentation_seed("presentation-two"))
    assert np.array_equal(first, again)  # a reload is the same presentation
    assert not np.array_equal(first, repeat)
    for shown in (first, repeat):
        change = shown.astype(int) - base.astype(int)
        assert np.abs(change).max() == DITHER_MAX_CHANGE
        assert (change != 0).mean() == pytest.approx(DITHER_SHARE, rel=0.02)
        mse = float((change**2).mean())
        assert 10 * math.log10(255**2 / mse) == pytest.approx(DITHER_PSNR_DB, abs=0.2)
    assert pytest.approx(68.1, abs=0.05) == DITHER_PSNR_DB
    # Same length, different bytes: a repeat cannot be matched to its first showing by size.
    a, b = encode_grey_png_stored(first), encode_grey_png_stored(repeat)
    assert len(a) == len(b) and a != b


def test_flat_border_lines_counts_bands_from_each_edge() -> None:
    image = np.random.default_rng(0).integers(50, 200, (64, 64)).astype(np.uint8)
    assert flat_border_lines(image) == 0
    image[:5] = 0
    image[:, -3:] = 1
    assert flat_border_lines(image) == 8


def test_geometry_round_trips_and_rejects_nonsense() -> None:
    g = DisplayGeometry(size=256, aspect="pad", native=96)
    assert DisplayGeometry.from_json(g.to_json()) == g
    assert DisplayGeometry.from_json(None) == DisplayGeometry()
    for bad in ({"size": 10}, {"aspect": "stretch"}, {"native": 0}):
        with pytest.raises(ValueError):
            DisplayGeometry(**bad)  # type: ignore[arg-type]


def test_study_geometry_matches_resolution_only_where_sources_differ() -> None:
    from app.studies.design import DisplayOptions
    from app.studies.display import geometry_for

    mixed = [(1024, 820), (96, 96), (512, 380)]
    assert geometry_for(DisplayOptions(), mixed).native == 96
    assert geometry_for(DisplayOptions(aspect="pad"), mixed).native == 96
    assert geometry_for(DisplayOptions(), [(96, 96), (128, 96)]).native is None  # one side
    assert geometry_for(DisplayOptions(match_resolution=False), mixed).native is None
