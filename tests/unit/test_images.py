"""load_image on real chest X-rays (pneumonia-model-package) and pydicom test files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from ml.data.collections import available_collections
from ml.data.dicom import (
    CorruptImageError,
    ImageDecodeError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedFileError,
    decode_dicom,
)
from ml.data.images import DEFAULT_MAX_PIXELS, load_image, sniff_format

# Read as data (ml.data.collections): importing the package would need its TensorFlow stack.
CXR_FILES = sorted(available_collections()["paediatric-cxr"].files)


def dcm(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not bundled with this pydicom")
    return Path(path)


def png_bytes(im: Image.Image, **save_kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **save_kwargs)
    return buf.getvalue()


def chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload)
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def png_with_header(width: int, height: int) -> bytes:
    """Valid PNG framing that announces width x height but carries almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_all_sixteen_chest_xrays_load() -> None:
    assert len(CXR_FILES) == 16
    for path in CXR_FILES:
        img = load_image(path)
        with Image.open(path) as reference:
            expected = np.asarray(reference.convert("L"), dtype=np.float32) / 255.0
            mode = reference.mode
        assert img.pixels.dtype == np.float32
        assert img.pixels.shape == expected.shape == (img.meta.rows, img.meta.cols)
        assert img.meta.source_format == "jpeg"
        assert img.meta.photometric == mode
        # Some files are stored as RGB; luminance may differ from Pillow's integer "L" by 1 LSB.
        assert np.abs(img.pixels - expected).max() <= 1.0 / 255 + 1e-6
        assert img.pixels.min() >= 0.0 and img.pixels.max() <= 1.0
        assert img.pixels.std() > 0.05  # a real radiograph, not a blank


def test_content_decides_format_not_the_name() -> None:
    jpeg = CXR_FILES[0].read_bytes()
    as_png = load_image(jpeg, name_hint="x.png")
    assert as_png.meta.source_format == "jpeg"
    np.testing.assert_array_equal(as_png.pixels, load_image(CXR_FILES[0]).pixels)
    noise = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(NotAnImageError, match=r"^x\.png: not a supported image"):
        load_image(noise, name_hint="x.png")
    with pytest.raises(NotAnImageError):
        load_image(b"")
    assert sniff_format(noise) is None
    assert sniff_format(jpeg) == "jpeg"
    assert sniff_format(dcm("CT_small.dcm").read_bytes()) == "dicom"


def test_png_signature_with_garbage_body_fails_clearly() -> None:
    with pytest.raises(ImageDecodeError, match=r"x\.png: PNG") as info:
        load_image(b"\x89PNG\r\n\x1a\n" + b"\x13" * 300, name_hint="x.png")
    assert isinstance(info.value, CorruptImageError | TruncatedFileError)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_jp2klossless.dcm"])
def test_dicom_with_and_without_preamble(name: str) -> None:
    data = dcm(name).read_bytes()
    reference = decode_dicom(data).pixels
    np.testing.assert_array_equal(load_image(dcm(name)).pixels, reference)
    np.testing.assert_array_equal(load_image(data[128:], name_hint="scan.bin").pixels, reference)
    assert load_image(io.BytesIO(data)).meta.source_format == "dicom"


def test_sixteen_bit_png_keeps_full_precision() -> None:
    import pydicom

    mr = pydicom.dcmread(dcm("MR_small.dcm")).pixel_array.astype(np.uint16) * 13
    assert mr.max() > 255 * 13  # needs more than 8 bits
    img = load_image(png_bytes(Image.fromarray(mr)))
    assert img.meta.bits_stored == 16
    np.testing.assert_array_equal(np.rint(img.pixels.astype(np.float64) * 65535), mr)
    assert len(np.unique(img.pixels)) > 256


def test_rgb_and_rgba_become_grey() -> None:
    with Image.open(CXR_FILES[1]) as im:
        grey = im.convert("L")
    grey_px = load_image(png_bytes(grey)).pixels
    rgb_px = load_image(png_bytes(grey.convert("RGB"))).pixels
    np.testing.assert_allclose(rgb_px, grey_px, atol=1e-6)
    rgba = grey.convert("RGBA")
    alpha = np.full(grey.size[::-1], 255, dtype=np.uint8)
    alpha[:, : alpha.shape[1] // 2] = 0
    rgba.putalpha(Image.fromarray(alpha))
    rgba_px = load_image(png_bytes(rgba)).pixels
    assert rgba_px.ndim == 2
    assert np.all(rgba_px[:, : alpha.shape[1] // 2] == 0.0)  # transparent -> black
    np.testing.assert_allclose(rgba_px[:, -10:], grey_px[:, -10:], atol=1e-6)


def test_exif_orientation_is_applied() -> None:
    with Image.open(CXR_FILES[2]) as im:
        grey = im.convert("L").crop((0, 0, 300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    buf = io.BytesIO()
    grey.save(buf, format="JPEG", exif=exif.tobytes())
    img = load_image(buf.getvalue())
    assert img.pixels.shape == (300, 200)


def test_huge_png_header_refused_before_decoding() -> None:
    # 9000 x 9000 = 81 MP: over our 50 MP default, under Pillow's own bomb limit; the IDAT holds
    # 64 bytes, so reaching the decoder would have raised a truncation error instead.
    with pytest.raises(ImageTooLargeError, match="9000x9000") as info:
        load_image(png_with_header(9000, 9000), name_hint="big.png")
    assert info.value.pixels == 81_000_000 and info.value.max_pixels == DEFAULT_MAX_PIXELS
    with pytest.raises(ImageTooLargeError):  # beyond Pillow's decompression-bomb limit
        load_image(png_with_header(100_000, 100_000))
    with pytest.raises(TruncatedFileError):
        load_image(png_with_header(900, 900))  # under the limit: decoding is what fails
    with pytest.raises(ImageTooLargeError):
        load_image(CXR_FILES[0], max_pixels=1000)


def test_huge_jpeg_header_refused() -> None:
    data = bytearray(CXR_FILES[3].read_bytes())
    pos = 2  # walk marker segments from SOI to the frame header
    while data[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    data[pos + 5 : pos + 9] = struct.pack(">HH", 8000, 8000)
    with pytest.raises(ImageTooLargeError, match="8000x8000"):
        load_image(bytes(data))


def test_truncated_raster_files() -> None:
    jpeg = CXR_FILES[4].read_bytes()
    with pytest.raises(TruncatedFileError):
        load_image(jpeg[: len(jpeg) // 2])
    with Image.open(CXR_FILES[4]) as im:
        png = png_bytes(im.convert("L"))
    with pytest.raises(TruncatedFileError):
        load_image(png[: len(png) // 2])
