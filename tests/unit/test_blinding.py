"""Blinding: every served image is re-encoded identically whatever its origin."""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from pydicom.data import get_testdata_file

from app.domain.blinding import (
    canonical_png,
    canonical_png16,
    encode_grey_png,
    opaque_id,
    png_chunk_types,
)
from ml.data.collections import available_collections
from ml.data.images import load_image

# Located without importing the package: its __init__ needs strictyaml, which the data-only
# wheel is installed without.
CXR_FILES = sorted(available_collections()["paediatric-cxr"].files)
MARKER = "GeneratorX-v2.1"  # planted in every metadata channel; must never reach a reader


def dcm(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not bundled with this pydicom")
    return Path(path)


def ihdr(data: bytes) -> tuple[int, ...]:
    assert data[12:16] == b"IHDR"
    return struct.unpack(">IIBBBBB", data[16:29])


def heterogeneous_sources() -> dict[str, bytes]:
    """Same kind of content arriving through very different pipelines."""
    with Image.open(CXR_FILES[0]) as im:
        cxr = im.convert("L")
    exif = Image.Exif()
    exif[0x0131] = MARKER  # Software
    exif[0x010F] = "ACME Scanner"  # Make
    jpeg = io.BytesIO()
    cxr.save(jpeg, format="JPEG", quality=90, exif=exif.tobytes())

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", MARKER)
    info.add_itxt("Comment", f"synthetic by {MARKER}")
    icc = dcm("crayons.icc").read_bytes()  # a real ICC profile shipped with pydicom
    portrait = cxr.crop((300, 0, 900, 1000)).convert("RGB")
    png_meta = io.BytesIO()
    portrait.save(png_meta, format="PNG", pnginfo=info, icc_profile=icc, dpi=(300, 300))

    mr = np.asarray(load_image(dcm("MR_small.dcm")).pixels)
    png16 = io.BytesIO()
    Image.fromarray(np.rint(mr * 65535).astype(np.uint16)).save(png16, format="PNG")
    return {
        "jpeg_exif": jpeg.getvalue(),
        "png_text_icc_rgb": png_meta.getvalue(),
        "png16": png16.getvalue(),
        "dicom_ct": dcm("CT_small.dcm").read_bytes(),
        "dicom_j2k_wide": dcm("JPEG2000.dcm").read_bytes(),
    }


def test_sources_really_carry_metadata() -> None:
    sources = heterogeneous_sources()
    png_types = png_chunk_types(sources["png_text_icc_rgb"])
    assert {"tEXt", "iTXt", "iCCP", "pHYs"} <= set(png_types)
    assert b"Exif" in sources["jpeg_exif"][:2000]
    assert MARKER.encode() in sources["jpeg_exif"]


@pytest.mark.parametrize("encoder", [canonical_png, canonical_png16])
def test_every_origin_comes_out_identical_in_form(encoder: Callable[..., bytes]) -> None:
    sources = heterogeneous_sources()
    outputs = {name: encoder(load_image(data)) for name, data in sources.items()}
    headers = {ihdr(png) for png in outputs.values()}
    depth = 8 if encoder is canonical_png else 16
    assert headers == {(512, 512, depth, 0, 0, 0, 0)}  # size, bit depth, grey, no interlace
    for name, png in outputs.items():
        assert png_chunk_types(png) == ["IHDR", "IDAT", "IEND"], name
        assert MARKER.encode() not in png and b"ACME" not in png
        with Image.open(io.BytesIO(png)) as im:
            assert im.size == (512, 512)
            assert im.mode == ("L" if depth == 8 else "I;16")
            assert im.info == {}  # no dpi, gamma, icc_profile, exif or text survives
            assert not im.getexif()


def test_bytes_are_deterministic() -> None:
    data = heterogeneous_sources()["dicom_ct"]
    first, second = load_image(data), load_image(data)
    assert canonical_png(first) == canonical_png(second) == canonical_png(first.pixels)
    assert canonical_png16(first) == canonical_png16(second)
    assert canonical_png(first) != canonical_png(load_image(CXR_FILES[5]))


@pytest.mark.parametrize("bits", [8, 16])
def test_pixels_round_trip_exactly_when_no_resize_is_needed(bits: int) -> None:
    pixels = np.random.default_rng(7).random((512, 512)).astype(np.float32)
    png = canonical_png(pixels) if bits == 8 else canonical_png16(pixels)
    top = 255 if bits == 8 else 65535
    with Image.open(io.BytesIO(png)) as im:
        decoded = np.asarray(im).astype(np.int64)
    np.testing.assert_array_equal(decoded, np.rint(pixels.astype(np.float64) * top))


def test_encoder_matches_pillow_on_real_image() -> None:
    with Image.open(CXR_FILES[6]) as im:
        grey = np.asarray(im.convert("L"))
    with Image.open(io.BytesIO(encode_grey_png(grey))) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded), grey)


def test_aspect_ratio_kept_and_padding_is_black() -> None:
    wide = np.full((128, 256), 0.8, dtype=np.float32)  # 2:1 -> 512 x 256 centred
    with Image.open(io.BytesIO(canonical_png(wide))) as im:
        out = np.asarray(im)
    assert np.all(out[:128] == 0) and np.all(out[384:] == 0)
    assert np.all(np.abs(out[130:382].astype(int) - 204) <= 1)
    tall = np.full((300, 100), 1.0, dtype=np.float32)  # 512 x 171, odd padding split
    with Image.open(io.BytesIO(canonical_png(tall))) as im:
        out = np.asarray(im)
    cols = np.flatnonzero(out[256] > 0)
    assert (cols[0], cols[-1]) == (170, 340)


def test_downscaling_is_anti_aliased() -> None:
    # A 1-pixel checkerboard has no representable content at half size: a proper low-pass
    # resize gives flat mid-grey, nearest-neighbour would give solid black or white.
    checker = (np.indices((1024, 1024)).sum(axis=0) % 2).astype(np.float32)
    with Image.open(io.BytesIO(canonical_png(checker))) as im:
        interior = np.asarray(im)[16:-16, 16:-16].astype(float)
    assert abs(interior.mean() - 127.5) < 2 and interior.std() < 2


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), dtype=np.uint8),
        np.full((10, 10), 2.0),
        np.full((10, 10), np.nan),
        np.zeros((10, 10, 3)),
        np.zeros((0, 10)),
    ],
)
def test_invalid_inputs_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        canonical_png(bad)


def test_png_chunk_types_parser() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("k", "v")
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="PNG", pnginfo=info)
    assert png_chunk_types(buf.getvalue()) == ["IHDR", "tEXt", "IDAT", "IEND"]
    with pytest.raises(ValueError, match="signature"):
        png_chunk_types(b"GIF89a" + bytes(20))
    corrupt = bytearray(buf.getvalue())
    corrupt[20] ^= 0xFF  # inside IHDR payload
    with pytest.raises(ValueError, match="CRC"):
        png_chunk_types(bytes(corrupt))
    with pytest.raises(ValueError):
        png_chunk_types(buf.getvalue()[:-6])


def test_opaque_ids_are_unique_long_and_url_safe() -> None:
    ids = [opaque_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:50]:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", value)  # 24 random bytes = 192 bits
