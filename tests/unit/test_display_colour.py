"""A colour study's display: every channel through the one geometry, an RGB PNG whose length
depends only on its size, a dither that keeps grey images grey, and grey studies unchanged."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.domain.blinding import (
    encode_grey_png_stored,
    encode_rgb_png_stored,
    png_chunk_types,
    stored_png_length,
)
from app.domain.display_geometry import (
    DITHER_SHARE,
    DisplayGeometry,
    dither,
    flat_border_lines,
    presentation_seed,
    render,
)
from app.studies.display import served_png


def _colour(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(3, h, w) in [0, 1] whose channels run in different directions: plainly colour."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.1, 0.9, width)[None, :].repeat(height, axis=0)
    y = np.linspace(0.2, 0.8, height)[:, None].repeat(width, axis=1)
    planes = np.stack([x, y, 1 - x])
    return np.clip(planes + rng.normal(0, 0.03, planes.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("shape", [(128, 128), (1, 1), (300, 200), (129, 511)])
def test_rgb_stored_png_length_depends_only_on_size(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    lengths = set()
    for pixels in (
        np.zeros((*shape, 3), np.uint8),
        np.full((*shape, 3), 255, np.uint8),
        rng.integers(0, 256, (*shape, 3), dtype=np.uint8),
    ):
        data = encode_rgb_png_stored(pixels)
        lengths.add(len(data))
        assert png_chunk_types(data) == ["IHDR", "IDAT", "IEND"]
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "RGB" and np.array_equal(np.asarray(im), pixels)
    assert lengths == {stored_png_length(shape[1], shape[0], 3)}
    # A grey image of the same size has its own, shorter, length: one format per study.
    assert stored_png_length(shape[1], shape[0]) < stored_png_length(shape[1], shape[0], 3)
    with pytest.raises(ValueError):
        encode_rgb_png_stored(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("aspect", ["crop", "pad"])
def test_colour_render_takes_every_channel_through_the_one_geometry(aspect: str) -> None:
    source = _colour(150, 240)
    grey = DisplayGeometry(size=96, aspect=aspect, native=80)  # type: ignore[arg-type]
    colour = DisplayGeometry(size=96, aspect=aspect, native=80, colour=True)  # type: ignore[arg-type]
    out = render(source, colour)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    for channel in range(3):
        assert np.array_equal(out[..., channel], render(source[channel], grey))
    assert np.abs(out[..., 0].astype(int) - out[..., 2].astype(int)).mean() > 20  # still colour
    # A grey source in a colour study: three equal channels, each its grey-study rendering.
    plain = source.mean(axis=0)
    shown = render(plain, colour)
    assert shown.shape == (96, 96, 3)
    assert all(np.array_equal(shown[..., c], render(plain, grey)) for c in range(3))
    with pytest.raises(ValueError):
        render(source, grey)  # a grey study never gets colour pixels unnoticed
    with pytest.raises(ValueError):
        render(np.zeros((4, 20, 20), np.float32), colour)


def test_colour_dither_moves_whole_pixels_and_keeps_grey_grey() -> None:
    seed = presentation_seed("presentation-one")
    base = render(_colour(128, 128), DisplayGeometry(size=128, colour=True))
    base[:3] = 0  # the step turns inward at both ends of the range
    base[-3:] = 255
    shown = dither(base, seed)
    change = shown.astype(int) - base.astype(int)
    moved = (change != 0).any(axis=-1)
    assert np.abs(change).max() == 1
    assert moved.mean() == pytest.approx(DITHER_SHARE, rel=0.02)
    assert (change != 0)[moved].all()  # all three channels of a chosen pixel move
    assert not np.array_equal(shown, dither(base, presentation_seed("presentation-two")))

    grey = render(_colour(128, 128).mean(axis=0), DisplayGeometry(size=128))
    as_rgb = np.repeat(grey[..., None], 3, axis=-1)
    # Equal channels stay equal, and carry exactly the dither a grey study gives this image.
    assert np.array_equal(dither(as_rgb, seed), np.repeat(dither(grey, seed)[..., None], 3, -1))


def test_served_png_is_rgb_for_a_colour_rendering_and_unchanged_for_grey() -> None:
    grey = render(_colour(64, 64).mean(axis=0), DisplayGeometry(size=64))
    colour = render(_colour(64, 64), DisplayGeometry(size=64, colour=True))
    grey_png, colour_png = served_png(grey, "entry-a"), served_png(colour, "entry-a")
    assert grey_png == encode_grey_png_stored(dither(grey, presentation_seed("entry-a")))
    assert len(grey_png) == stored_png_length(64, 64)
    assert len(colour_png) == stored_png_length(64, 64, 3)
    with Image.open(io.BytesIO(colour_png)) as im:
        assert im.mode == "RGB"
        assert flat_border_lines(np.asarray(im.convert("L"))) == 0


def test_geometry_json_keeps_grey_studies_as_they_were() -> None:
    grey = DisplayGeometry(size=256, aspect="pad", native=96)
    assert grey.to_json() == {"size": 256, "aspect": "pad", "native": 96}
    assert DisplayGeometry.from_json(grey.to_json()) == grey
    colour = DisplayGeometry(size=256, colour=True)
    assert colour.to_json()["colour"] is True
    assert DisplayGeometry.from_json(colour.to_json()) == colour
