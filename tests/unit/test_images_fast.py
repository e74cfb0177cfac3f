"""The import's fast raster path (`load_grey_image` + `square_image`) against the plain one.

An import decodes PNG / JPEG films straight to a Pillow "F" image and squares it in Pillow
(no full-size numpy round trip). Its stored rows must equal, byte for byte, what
`encode_rows(load_image(...).pixels, ...)` gives, on real X-rays and on every raster mode.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from ml.data.collections import available_collections
from ml.data.decode_pool import DecodeSettings, decode_file
from ml.data.errors import NotAnImageError, TruncatedFileError
from ml.data.images import load_grey_image, load_image
from ml.data.resize import RULES, square_image, to_square
from ml.data.store import encode_rows

CXR_FILES = sorted(available_collections()["paediatric-cxr"].files)


def _saved(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _film(index: int = 0, long_side: int = 300) -> Image.Image:
    """A real X-ray, grey, scaled to CheXpert-small size (fast to decode)."""
    with Image.open(CXR_FILES[index]) as im:
        grey = im.convert("L")
    grey.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    return grey


def _variants() -> dict[str, bytes]:
    """One real film in every raster form an import meets."""
    film = _film()
    rotated = Image.Exif()
    rotated[0x0112] = 6
    wide = np.asarray(film).astype(np.uint16) * 257
    return {
        "grey jpeg": _saved(film, "JPEG", quality=90),
        "rgb jpeg": _saved(film.convert("RGB"), "JPEG", quality=90),
        "exif-rotated jpeg": _saved(film, "JPEG", exif=rotated.tobytes()),
        "exif-rotated png": _saved(film, "PNG", exif=rotated.tobytes()),
        "grey png": _saved(film, "PNG"),
        "16-bit png": _saved(Image.fromarray(wide), "PNG"),
        "rgba png": _saved(film.convert("RGBA"), "PNG"),
        "grey+alpha png": _saved(film.convert("LA"), "PNG"),
        "1-bit png": _saved(film.convert("1"), "PNG"),
    }


def test_every_8_bit_code_maps_as_the_float64_division() -> None:
    codes = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    expected = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32).reshape(16, 16)
    for fmt in ("PNG", "JPEG"):
        data = _saved(codes, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
        image = load_grey_image(data)
        assert image is not None and image.mode == "F"
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)
        reference = (decoded / 255.0).astype(np.float32)
        assert np.array_equal(np.asarray(image), reference)
        assert np.array_equal(load_image(data).pixels, reference)
    assert np.array_equal(np.asarray(load_grey_image(_saved(codes, "PNG"))), expected)


def test_grey_image_equals_load_image_on_real_films() -> None:
    for path in CXR_FILES:
        data = Path(path).read_bytes()
        image = load_grey_image(data)
        assert image is not None and image.mode == "F"
        assert np.array_equal(np.asarray(image), load_image(data).pixels), path


@pytest.mark.parametrize("name", sorted(_variants()))
def test_grey_image_equals_load_image_in_every_mode(name: str) -> None:
    data = _variants()[name]
    image = load_grey_image(data)
    assert image is not None and image.mode == "F"
    pixels = load_image(data).pixels
    assert np.array_equal(np.asarray(image), pixels)
    if "rotated" in name:
        # The EXIF orientation is still honoured on the fast path: a 90-degree turn.
        assert pixels.shape == _film().size


def test_grey_image_leaves_dicom_and_non_images_to_load_image() -> None:
    ct = get_testdata_file("CT_small.dcm", download=False)
    assert ct is not None
    assert load_grey_image(Path(ct).read_bytes()) is None
    assert load_grey_image(b"not an image at all") is None
    with pytest.raises(NotAnImageError):
        load_image(b"not an image at all")


def test_grey_image_raises_load_image_errors() -> None:
    data = _variants()["grey jpeg"]
    cut = data[: len(data) // 2]
    with pytest.raises(TruncatedFileError) as fast:
        load_grey_image(cut)
    with pytest.raises(TruncatedFileError) as plain:
        load_image(cut)
    assert fast.value.reason == plain.value.reason


@pytest.mark.parametrize("rule", RULES)
def test_square_image_equals_to_square(rule: str) -> None:
    film = load_image(_variants()["grey jpeg"]).pixels
    shapes = [film, film.T, film[:97, :211], film[:1, :40], film[:33, :33]]
    for pixels in shapes:
        image = Image.fromarray(np.ascontiguousarray(pixels))
        for size in (1, 17, 64, 128, 400):
            expected = to_square(pixels, size, rule)  # type: ignore[arg-type]
            got = square_image(image, size, rule)  # type: ignore[arg-type]
            assert got.dtype == np.float32 and got.flags.writeable
            assert np.array_equal(got, expected), (pixels.shape, size, rule)


def test_square_image_validates() -> None:
    with pytest.raises(ValueError, match="F"):
        square_image(_film(), 64)
    image = Image.new("F", (8, 8))
    with pytest.raises(ValueError, match="size"):
        square_image(image, 0)
    with pytest.raises(ValueError, match="rule"):
        square_image(image, 8, "stretch")  # type: ignore[arg-type]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_decoded_rows_equal_the_plain_path_byte_for_byte(
    tmp_path: Path, rule: str, dtype: str
) -> None:
    settings = DecodeSettings(
        salt="s", window=None, stack=False, resolutions=(32, 64, 301), rule=rule,  # type: ignore[arg-type]
        channels=1, dtype=dtype,  # type: ignore[arg-type]
    )  # fmt: skip
    files = dict(_variants())
    files |= {f"cxr{i}": Path(p).read_bytes() for i, p in enumerate(CXR_FILES[:4])}
    for name, data in files.items():
        path = tmp_path / name.replace(" ", "_")
        path.write_bytes(data)
        decoded = decode_file(settings, path, name)
        assert decoded.rows is not None, decoded.reason
        pixels = load_image(data).pixels
        expected = encode_rows(pixels, settings.resolutions, rule, 1, dtype)  # type: ignore[arg-type]
        assert decoded.rows.keys() == expected.keys()
        for res, row in expected.items():
            assert decoded.rows[res].dtype == row.dtype
            assert decoded.rows[res].tobytes() == row.tobytes(), (name, res)
