"""Hostile DICOM: hypothesis mutates pydicom's small test files (byte flips, cuts, insertions,
deletions) and rewrites their image header elements with arbitrary values, and the reader must
answer each with a sane image or an ImageDecodeError, quickly and within a memory bound.

The regression tests at the end are the smallest inputs the fuzzing found, one per fix.
"""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate, generate_frames
from pydicom.tag import Tag

from ml.data.dicom import _HEADER_ALLOWANCE
from ml.data.errors import (
    CorruptImageError,
    ImageDecodeError,
    ImageTooLargeError,
    TruncatedFileError,
)
from ml.data.images import load_image

# Small on purpose: a header that passes this limit must not cost more than such an image.
MAX_PIXELS = 256 * 256
# What decoding one image of MAX_PIXELS may hold at its peak (codec output, float32 copies,
# int64 for a VOI LUT), plus a few copies of the file itself (pydicom's buffers, one frame).
PIXEL_BUDGET = 64 * MAX_PIXELS
FILE_COPIES = 6
SECONDS = 5.0  # the slowest seed decodes in milliseconds; CharLS spun for 5-12 s

SEEDS = (
    "CT_small.dcm",  # explicit VR little endian, 16-bit, rescale
    "MR_small.dcm",  # header window
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEGLSNearLossless_08.dcm",
    "MR_small_jp2klossless.dcm",
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless, RGB
    "SC_rgb_small_odd.dcm",  # native RGB, odd size
    "SC_rgb_rle_2frame.dcm",
)
# Seeds in explicit VR little endian, where header elements can be rewritten as raw bytes.
EXPLICIT_LE = tuple(
    s for s in SEEDS if s not in ("MR_small_implicit.dcm", "MR_small_bigendian.dcm")
)
TRANSFER_SYNTAXES = (
    *(str(uid) for uid in pydicom.uid.AllTransferSyntaxes),
    "1.2.840.10008.1.2.4.999",
    "1.2.3",
    "",
    "1.2.840.10008.1.2\\1.2.840.10008.1.2.1",
)


@cache
def seed(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not bundled with this pydicom")
    return Path(path).read_bytes()


def check_reader(data: bytes, extra_bytes: int = 0) -> None:
    """The property: a sane image or our own error, in bounded time and memory."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every oddity it tolerates
        tracemalloc.start()
        start = time.perf_counter()
        try:
            image = load_image(data, max_pixels=MAX_PIXELS)
        except ImageDecodeError as exc:
            assert isinstance(exc.reason, str) and exc.reason
            image = None
        finally:
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert elapsed < SECONDS, f"took {elapsed:.1f} s"
    budget = PIXEL_BUDGET + FILE_COPIES * len(data) + extra_bytes
    assert peak < budget, f"peak {peak:,} bytes"
    if image is not None:
        pixels = image.pixels
        assert pixels.dtype == np.float32 and pixels.ndim == 2
        assert pixels.shape == (image.meta.rows, image.meta.cols)
        assert pixels.size <= MAX_PIXELS
        assert np.isfinite(pixels).all()
        assert pixels.min() >= 0.0 and pixels.max() <= 1.0


# --- byte-level mutations ----------------------------------------------------------------


def _flip(data: bytearray, pos: int, blob: bytes) -> None:
    data[pos : pos + 1] = blob[:1] or b"\xff"


def _cut(data: bytearray, pos: int, blob: bytes) -> None:
    del data[pos:]


def _insert(data: bytearray, pos: int, blob: bytes) -> None:
    data[pos:pos] = blob


def _delete(data: bytearray, pos: int, blob: bytes) -> None:
    del data[pos : pos + max(1, len(blob))]


def _overwrite(data: bytearray, pos: int, blob: bytes) -> None:
    data[pos : pos + len(blob)] = blob


OPERATIONS: tuple[Callable[[bytearray, int, bytes], None], ...] = (
    _flip,
    _cut,
    _insert,
    _delete,
    _overwrite,
)
# Bytes that mean something to a parser: lengths, undefined length, item tags, markers.
_SPECIAL = st.sampled_from(
    [b"\x00", b"\xff", b"\xff\xff\xff\xff", b"\xfe\xff\x00\xe0", b"\xff\xd9", b"\x00\x00\x01\x00"]
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(seed(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 4))):
        # Mostly the header (preamble, meta group, image module, first fragment headers),
        # where a change alters how the rest is read; sometimes anywhere.
        limit = min(len(data), 1600) if draw(st.booleans()) else len(data)
        pos = draw(st.integers(0, max(0, limit - 1)))
        blob = draw(st.one_of(_SPECIAL, st.binary(min_size=1, max_size=8)))
        draw(st.sampled_from(OPERATIONS))(data, pos, blob)
    return bytes(data)


# --- header-level mutations --------------------------------------------------------------

_US = st.one_of(
    st.sampled_from([0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 32, 255, 256, 65535]), st.integers(0, 65535)
)
_NUMBER_TEXT = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "1e3", "nan", "inf", "-inf", "1e400", "abc", "", "1\\2"]),
    st.text(alphabet="0123456789.+-eE\\ ", max_size=12),
)
_CODE_TEXT = st.one_of(
    st.sampled_from(
        [
            *("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR"),
            *("YBR_RCT", "YBR_ICT", "CMYK", "", "MONOCHROME2\\RGB", "LINEAR", "SIGMOID"),
        ]
    ),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_ 0123456789\\", max_size=16),
)
HEADER_ELEMENTS: dict[str, tuple[str, st.SearchStrategy[bytes]]] = {
    "Rows": ("US", _US.map(lambda v: struct.pack("<H", v))),
    "Columns": ("US", _US.map(lambda v: struct.pack("<H", v))),
    "BitsAllocated": ("US", _US.map(lambda v: struct.pack("<H", v))),
    "BitsStored": ("US", _US.map(lambda v: struct.pack("<H", v))),
    "HighBit": ("US", _US.map(lambda v: struct.pack("<H", v))),
    "PixelRepresentation": ("US", _US.map(lambda v: struct.pack("<H", v))),
    "SamplesPerPixel": ("US", _US.map(lambda v: struct.pack("<H", v))),
    "PlanarConfiguration": ("US", _US.map(lambda v: struct.pack("<H", v))),
    "PhotometricInterpretation": ("CS", _CODE_TEXT.map(str.encode)),
    "NumberOfFrames": ("IS", _NUMBER_TEXT.map(str.encode)),
    "RescaleSlope": ("DS", _NUMBER_TEXT.map(str.encode)),
    "RescaleIntercept": ("DS", _NUMBER_TEXT.map(str.encode)),
    "WindowCenter": ("DS", _NUMBER_TEXT.map(str.encode)),
    "WindowWidth": ("DS", _NUMBER_TEXT.map(str.encode)),
    "VOILUTFunction": ("CS", _CODE_TEXT.map(str.encode)),
}


def with_raw_elements(data: bytes, values: dict[str, tuple[str, bytes]]) -> bytes:
    """`data` with each element set to exactly these bytes, unvalidated: pydicom writes a raw
    element as it is, so a Rows of two values or a slope of "abc" reaches the reader."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, (vr, value) in values.items():
        tag = Tag(keyword)
        padded = value + b" " if len(value) % 2 else value
        ds._dict[tag] = RawDataElement(tag, vr, len(padded), padded, 0, False, True)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def with_transfer_syntax(data: bytes, uid: str) -> bytes:
    """`data` with its file meta naming another transfer syntax, the dataset left as it is."""
    at = data.index(b"\x02\x00\x10\x00UI")
    (old_length,) = struct.unpack_from("<H", data, at + 6)
    value = uid.encode() + (b"\x00" if len(uid) % 2 else b"")
    element = data[at : at + 6] + struct.pack("<H", len(value)) + value
    out = bytearray(data[:at] + element + data[at + 8 + old_length :])
    group_length = out.index(b"\x02\x00\x00\x00UL\x04\x00") + 8
    (length,) = struct.unpack_from("<I", out, group_length)
    struct.pack_into("<I", out, group_length, length + len(value) - old_length)
    return bytes(out)


@st.composite
def rewritten(draw: st.DrawFn) -> bytes:
    data = seed(draw(st.sampled_from(EXPLICIT_LE)))
    keywords = draw(st.lists(st.sampled_from(sorted(HEADER_ELEMENTS)), max_size=4, unique=True))
    values = {k: (HEADER_ELEMENTS[k][0], draw(HEADER_ELEMENTS[k][1])) for k in keywords}
    if values:
        data = with_raw_elements(data, values)
    if draw(st.booleans()):
        data = with_transfer_syntax(data, draw(st.sampled_from(TRANSFER_SYNTAXES)))
    return data


FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.timeout(300)
@FUZZ
@given(mutated())
def test_mutated_bytes(data: bytes) -> None:
    check_reader(data)


@pytest.mark.timeout(300)
@FUZZ
@given(rewritten())
@example(with_raw_elements(seed("CT_small.dcm"), {"RescaleSlope": ("DS", b"inf")}))
@example(with_raw_elements(seed("MR_small.dcm"), {"WindowCenter": ("DS", b"nan")}))
def test_rewritten_headers(data: bytes) -> None:
    check_reader(data)


def test_the_seeds_decode() -> None:
    for name in SEEDS:
        data = seed(name)
        if name == "SC_rgb_rle_2frame.dcm":
            with pytest.raises(ImageDecodeError, match="2 frames"):
                load_image(data, max_pixels=MAX_PIXELS)
        else:
            assert load_image(data, max_pixels=MAX_PIXELS).pixels.size > 0
        check_reader(data)


# --- regressions: the smallest inputs the fuzzing found ---------------------------------


def test_unknown_vr_in_a_read_element_is_corrupt() -> None:
    # NotImplementedError from pydicom's value converter, raised when the value is first read.
    data = bytearray(seed("CT_small.dcm"))
    at = data.index(b"\x08\x00\x60\x00CS")  # Modality
    data[at + 4 : at + 6] = b"C?"
    with pytest.raises(CorruptImageError, match="invalid value"):
        load_image(bytes(data))


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_transfer_syntax_with_two_values_is_corrupt() -> None:
    # AttributeError: a MultiValue has no is_transfer_syntax. What is not a transfer syntax
    # leaves the meta group to dcmread, which makes a MultiValue of the two UIDs.
    data = with_transfer_syntax(seed("CT_small.dcm"), "1.2.840.10008.1.2.1\\1.2.840.10008.1.2")
    with pytest.raises(CorruptImageError, match="invalid transfer syntax UID"):
        load_image(data)


def test_rows_with_two_values_is_corrupt() -> None:
    data = with_raw_elements(seed("CT_small.dcm"), {"Rows": ("US", b"\x40\x00\x40\x00")})
    with pytest.raises(CorruptImageError, match="invalid value"):
        load_image(data)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("RescaleSlope", b"inf"), ("RescaleSlope", b"nan"), ("RescaleIntercept", b"1e308")],
)
def test_non_finite_rescale_is_corrupt(keyword: str, value: bytes) -> None:
    # Decoded before as an all-NaN image, which canonical_png would have made into noise.
    data = with_raw_elements(seed("CT_small.dcm"), {keyword: ("DS", value)})
    with pytest.raises(CorruptImageError, match="infinities or NaN"):
        load_image(data)


def test_non_finite_header_window_is_ignored() -> None:
    plain = load_image(seed("MR_small.dcm"), window=None)
    data = with_raw_elements(seed("MR_small.dcm"), {"WindowCenter": ("DS", b"nan")})
    image = load_image(data)
    assert image.meta.voi == "minmax" and np.isfinite(image.pixels).all()
    assert plain.meta.voi == "window"


def _first_frame(name: str) -> tuple[pydicom.Dataset, bytes]:
    ds = pydicom.dcmread(io.BytesIO(seed(name)))
    return ds, next(generate_frames(ds.PixelData, number_of_frames=1))


def _with_frame(ds: pydicom.Dataset, frame: bytes) -> bytes:
    ds.PixelData = encapsulate([frame])
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "size_at"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", lambda f: f.index(b"\xff\xf7") + 5),  # SOF55
        ("JPEGLSNearLossless_08.dcm", lambda f: f.index(b"\xff\xf7") + 5),
        ("SC_rgb_jpeg_gdcm.dcm", lambda f: f.index(b"\xff\xc3") + 5),  # SOF3
    ],
)
def test_codestream_larger_than_the_header_is_refused_before_decoding(
    name: str, size_at: Callable[[bytes], int]
) -> None:
    # The DICOM header said 64x64; CharLS sized its output from the stream's 60000x60000 and
    # spun for minutes at gigabytes of memory.
    ds, frame = _first_frame(name)
    big = bytearray(frame)
    struct.pack_into(">HH", big, size_at(frame), 60000, 60000)
    data = _with_frame(ds, bytes(big))
    with pytest.raises(CorruptImageError, match="60000x60000 pixels but the DICOM header"):
        load_image(data)
    check_reader(data)


def test_j2k_codestream_larger_than_the_header_is_refused() -> None:
    ds, frame = _first_frame("MR_small_jp2klossless.dcm")
    big = bytearray(frame)
    at = frame.index(b"\xff\x4f\xff\x51") + 8  # Xsiz, Ysiz
    struct.pack_into(">II", big, at, 60000, 60000)
    with pytest.raises(CorruptImageError, match="JPEG 2000 stream is 60000x60000"):
        load_image(_with_frame(ds, bytes(big)))


def test_jpeg_ls_stream_without_its_end_is_truncated_at_once() -> None:
    # A fragment cut in half: CharLS took 5 to 12 s of CPU to say so.
    ds, frame = _first_frame("MR_small_jpeg_ls_lossless.dcm")
    data = _with_frame(ds, frame[: len(frame) // 2])
    start = time.perf_counter()
    with pytest.raises(TruncatedFileError, match="no end-of-image marker"):
        load_image(data)
    assert time.perf_counter() - start < 1.0


def test_rle_bomb_is_refused_before_expanding() -> None:
    # Two bytes (repeat 128 times) per run: a segment decodes to 64 times its size.
    ds = pydicom.dcmread(io.BytesIO(seed("MR_small_RLE.dcm")))
    ds.Rows = ds.Columns = 256  # 65,536 bytes per segment are all this image needs
    segment = b"\x81\x00" * 2_000_000  # would decode to 256 MB
    header = struct.pack("<16I", 2, 64, 64 + len(segment), *[0] * 13)
    data = _with_frame(ds, header + segment + segment)
    with pytest.raises(CorruptImageError, match="RLE segment 1 decodes to more than"):
        load_image(data, max_pixels=MAX_PIXELS)
    check_reader(data)


def test_deflate_bomb_is_refused_before_inflating() -> None:
    # 30 MB of zeros in a private element deflate to about 30 KB; dcmread inflated everything.
    ds = pydicom.dcmread(io.BytesIO(seed("CT_small.dcm")))
    ds.add_new(0x00091010, "OB", bytes(30 * 2**20))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    assert len(data) < 100_000
    with pytest.raises(ImageTooLargeError, match="deflated DICOM data inflates to more than"):
        load_image(data, max_pixels=MAX_PIXELS)
    # Inflation stops at what an image of MAX_PIXELS could need, plus the header allowance.
    check_reader(data, extra_bytes=_HEADER_ALLOWANCE)


def test_small_deflated_file_still_decodes() -> None:
    ds = pydicom.dcmread(io.BytesIO(seed("CT_small.dcm")))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    deflated = load_image(out.getvalue()).pixels
    np.testing.assert_array_equal(deflated, load_image(seed("CT_small.dcm")).pixels)
    # A meta group only dcmread reads, naming deflate: refused rather than inflated unbounded.
    implicit_meta = out.getvalue().replace(b"\x02\x00\x10\x00UI", b"\x02\x00\x10\x00\x16\x00", 1)
    with pytest.raises(CorruptImageError, match="deflated DICOM file with a malformed"):
        load_image(implicit_meta)
