"""DICOM decoding on pydicom's bundled test files (read in place, never downloaded)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from ml.data.dicom import (
    CT_WINDOW_PRESETS,
    LUMA_WEIGHTS,
    FrameIndexError,
    ImageDecodeError,
    ImageTooLargeError,
    MultiFrameError,
    NoPixelDataError,
    NotDicomError,
    TruncatedFileError,
    UnsupportedCodecError,
    UnsupportedPixelFormatError,
    apply_window,
    decode_dicom,
    decode_dicom_values,
    patient_key,
    window_stack,
)


def dcm(name: str) -> Path:
    # download=False: a missing file must skip, never reach the network.
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not bundled with this pydicom")
    return Path(path)


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def raw_pixels(name: str) -> np.ndarray:
    return pydicom.dcmread(dcm(name)).pixel_array


# --- values and windowing ----------------------------------------------------------------


def test_ct_small_rescale_gives_plausible_hounsfield_units() -> None:
    values, meta = decode_dicom_values(dcm("CT_small.dcm"))
    ds = pydicom.dcmread(dcm("CT_small.dcm"))
    assert float(ds.RescaleIntercept) == -1024.0
    np.testing.assert_array_equal(values, ds.pixel_array.astype(np.float32) - 1024.0)
    # Outside-body air and lung sit far below water, bone far above; soft tissue near 0.
    assert values.min() < -800
    assert values.max() > 1000
    assert -100 < float(np.median(values)) < 100
    assert (meta.rows, meta.cols, meta.bits_stored) == (128, 128, 16)
    assert meta.modality == "CT"
    assert meta.photometric == "MONOCHROME2"
    assert meta.transfer_syntax == "Explicit VR Little Endian"


def test_dicom_linear_window_formula() -> None:
    hu = np.array([-1000.0, 0.0, 20.0, 40.0, 79.5, 80.0, 3000.0])
    out = apply_window(hu, 40, 80)
    # Brain window [0, 80] HU: lower edge is 0 HU, 20 HU is a quarter of the way up.
    np.testing.assert_allclose(out, [0.0, 0.0, 0.2532, 0.5063, 1.0, 1.0, 1.0], atol=1e-3)
    # A wider window centred at 40 puts water (0 HU) at about a quarter.
    assert apply_window(np.array([0.0]), 40, 160)[0] == pytest.approx(0.2516, abs=1e-3)


def test_explicit_window_on_ct_maps_and_clips() -> None:
    values, _ = decode_dicom_values(dcm("CT_small.dcm"))
    img = decode_dicom(dcm("CT_small.dcm"), window=(40, 80))
    px = img.pixels
    assert px.dtype == np.float32 and px.shape == (128, 128)
    assert img.meta.voi == "window" and img.meta.window == (40.0, 80.0)
    assert np.all(px[values <= 0] == 0.0)
    assert np.all(px[values >= 80] == 1.0)
    inside = (values > 5) & (values < 75)
    assert inside.any()
    np.testing.assert_allclose(px[inside], (values[inside] - 39.5) / 79 + 0.5, atol=1e-5)
    # Most of a CT slice is outside a narrow brain window, so clipping must be visible.
    assert (px == 0).mean() + (px == 1).mean() > 0.5


def test_window_stack_three_presets() -> None:
    values, _ = decode_dicom_values(dcm("CT_small.dcm"))
    stack = window_stack(values)
    assert stack.shape == (3, 128, 128) and stack.dtype == np.float32
    for channel, name in enumerate(("brain", "subdural", "bone")):
        np.testing.assert_array_equal(
            stack[channel], apply_window(values, *CT_WINDOW_PRESETS[name])
        )
    assert CT_WINDOW_PRESETS["brain"] == (40, 80)
    assert CT_WINDOW_PRESETS["subdural"] == (80, 200)
    assert CT_WINDOW_PRESETS["bone"] == (600, 2800)
    custom = window_stack(np.array([[600.0]]), ["bone", (600.0, 100.0)])
    assert custom[:, 0, 0] == pytest.approx([0.5, 0.5], abs=0.01)


def test_header_window_is_applied_unless_disabled() -> None:
    raw = raw_pixels("MR_small.dcm").astype(np.float64)
    img = decode_dicom(dcm("MR_small.dcm"))
    assert img.meta.voi == "window" and img.meta.window == (600.0, 1600.0)
    np.testing.assert_allclose(img.pixels, apply_window(raw, 600, 1600), atol=1e-6)
    plain = decode_dicom(dcm("MR_small.dcm"), apply_header_voi=False)
    assert plain.meta.voi == "minmax"
    assert plain.meta.value_range == (raw.min(), raw.max())
    assert plain.pixels.min() == 0.0 and plain.pixels.max() == 1.0
    np.testing.assert_allclose(plain.pixels, (raw - raw.min()) / np.ptp(raw), atol=1e-6)


def test_monochrome1_is_inverted_relative_to_monochrome2() -> None:
    ds = pydicom.dcmread(dcm("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    mono1 = to_bytes(ds)
    for kwargs in ({"window": (40.0, 400.0)}, {}):
        m2 = decode_dicom(dcm("CT_small.dcm"), **kwargs).pixels
        m1 = decode_dicom(mono1, **kwargs).pixels
        np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    # Highest stored value is displayed darkest in MONOCHROME1.
    m1 = decode_dicom(mono1).pixels
    assert m1.flat[int(np.argmax(ds.pixel_array))] == 0.0


@pytest.mark.parametrize(
    "twin",
    [
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_lossless_encodings_decode_identically(twin: str) -> None:
    reference = decode_dicom(dcm("MR_small.dcm"))
    other = decode_dicom(dcm(twin))
    assert other.meta.transfer_syntax != reference.meta.transfer_syntax
    np.testing.assert_array_equal(other.pixels, reference.pixels)


@pytest.mark.parametrize(
    ("twin", "tolerance"),
    [
        ("SC_rgb_jpeg_gdcm.dcm", 0.0),  # JPEG lossless, process 14
        ("SC_rgb_gdcm_KY.dcm", 0.0),  # JPEG 2000
        ("SC_rgb_rle_16bit.dcm", 0.0),  # same picture stored as 16-bit
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", 0.04),  # lossy JPEG baseline, YBR_FULL_422
        ("SC_ybr_full_422_uncompressed.dcm", 0.01),  # YBR converted back to RGB
        ("SC_rgb_jls_lossy_line.dcm", 0.01),  # JPEG-LS near-lossless
    ],
)
def test_colour_twins_decode_to_same_luminance(twin: str, tolerance: float) -> None:
    reference = decode_dicom(dcm("SC_rgb_rle.dcm")).pixels
    other = decode_dicom(dcm(twin)).pixels
    assert np.abs(other - reference).max() <= tolerance + 1e-6


def test_rgb_becomes_bt601_luminance() -> None:
    rgb = raw_pixels("SC_rgb_small_odd.dcm").astype(np.float64)
    img = decode_dicom(dcm("SC_rgb_small_odd.dcm"))
    assert img.meta.photometric == "RGB" and img.pixels.shape == (3, 3)
    np.testing.assert_allclose(img.pixels, rgb @ np.array(LUMA_WEIGHTS) / 255.0, atol=1e-6)


def test_eight_bit_images_decode() -> None:
    img = decode_dicom(dcm("JPEGLSNearLossless_08.dcm"))
    assert img.meta.bits_stored == 8 and img.pixels.shape == (45, 10)
    assert img.pixels.min() == 0.0 and img.pixels.max() == 1.0


def test_multi_frame_needs_an_explicit_frame() -> None:
    with pytest.raises(MultiFrameError, match=r"2 frames; pass frame=") as info:
        decode_dicom(dcm("SC_rgb_rle_2frame.dcm"))
    assert info.value.n_frames == 2
    second = decode_dicom(dcm("SC_rgb_rle_2frame.dcm"), frame=1)
    expected = raw_pixels("SC_rgb_rle_2frame.dcm")[1].astype(np.float64) @ np.array(LUMA_WEIGHTS)
    np.testing.assert_allclose(second.pixels, expected / 255.0, atol=1e-6)
    assert (second.meta.n_frames, second.meta.frame) == (2, 1)
    first = decode_dicom(dcm("SC_rgb_rle_2frame.dcm"), frame=0)
    assert not np.array_equal(first.pixels, second.pixels)
    with pytest.raises(FrameIndexError):
        decode_dicom(dcm("SC_rgb_rle_2frame.dcm"), frame=2)


# --- errors ------------------------------------------------------------------------------


def test_truncated_pixel_data_file_from_pydicom() -> None:
    with pytest.raises(TruncatedFileError, match="truncated"):
        decode_dicom(dcm("MR_truncated.dcm"))


@pytest.mark.parametrize(
    ("name", "fraction"),
    [
        ("CT_small.dcm", 0.5),  # inside native pixel data
        ("CT_small.dcm", 0.02),  # inside the header
        ("MR_small_RLE.dcm", 0.6),  # inside encapsulated fragments
    ],
)
def test_truncated_bytes_are_reported_as_truncation(name: str, fraction: float) -> None:
    data = dcm(name).read_bytes()
    with pytest.raises(TruncatedFileError):
        decode_dicom(data[: int(len(data) * fraction)])
    with pytest.raises(TruncatedFileError):
        decode_dicom(b"")
    with pytest.raises(TruncatedFileError, match="right after its 'DICM' marker"):
        decode_dicom(data[:133])


def _header_only(sop_class: str, modality: str) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID = "P-1"
    ds.Modality = modality
    return to_bytes(ds)


def test_dataset_without_pixel_data() -> None:
    with pytest.raises(NoPixelDataError) as info:
        decode_dicom(_header_only("1.2.840.10008.5.1.4.1.1.88.11", "SR"))  # Basic Text SR
    assert str(info.value) == "DICOM has no pixel data (no (7FE0,0010) element)"
    assert info.value.reason == str(info.value)
    # A real non-image object (structured report) gets the same answer.
    with pytest.raises(NoPixelDataError):
        decode_dicom(dcm("test-SR.dcm"))


# Where elements of CT_small.dcm start (explicit VR little endian: tag, then VR).
CT_ROWS = b"\x28\x00\x10\x00US"  # (0028,0010) Rows
CT_PHOTOMETRIC = b"\x28\x00\x04\x00CS"  # (0028,0004), kept by the decoder
CT_STUDY_UID = b"\x20\x00\x0d\x00UI"  # (0020,000D), skipped by the decoder
CT_PIXEL_DATA = b"\xe0\x7f\x10\x00OW"
CT_TRANSFER_SYNTAX = b"\x02\x00\x10\x00UI"  # (0002,0010), in the file meta group


@pytest.mark.parametrize(
    ("element", "offset"),
    [
        (CT_STUDY_UID, 0),  # between two elements, before the image module
        (CT_ROWS, 0),  # between two elements inside the image module
        (CT_ROWS, 3),  # inside an element's tag: pydicom stops there without a word
    ],
)
def test_image_cut_before_its_image_module_is_truncated(element: bytes, offset: int) -> None:
    data = dcm("CT_small.dcm").read_bytes()
    # The cut parses as a complete, shorter dataset; the SOP class gives it away.
    with pytest.raises(TruncatedFileError, match=r"'CT Image Storage' .* ends before its Rows"):
        decode_dicom(data[: data.index(element) + offset])


def test_header_only_image_object_is_truncated() -> None:
    with pytest.raises(TruncatedFileError, match="Secondary Capture Image Storage"):
        decode_dicom(_header_only("1.2.840.10008.5.1.4.1.1.7", "OT"))


@pytest.mark.parametrize(
    ("element", "offset"),
    [
        (CT_STUDY_UID, 8 + 10),  # inside a value the decoder skips with a seek
        (CT_PHOTOMETRIC, 8 + 5),  # inside a value the decoder reads
        (CT_PIXEL_DATA, 5),  # inside the pixel data element's header
        (CT_TRANSFER_SYNTAX, 8 + 4),  # inside the file meta group
        (CT_TRANSFER_SYNTAX, 3),
    ],
)
def test_cut_inside_an_element_is_truncated(element: bytes, offset: int) -> None:
    data = dcm("CT_small.dcm").read_bytes()
    with pytest.raises(TruncatedFileError, match="ends inside a data element"):
        decode_dicom(data[: data.index(element) + offset])


def test_cut_just_before_pixel_data_reads_as_stripped() -> None:
    # Every element but the pixel data: the same bytes as a header whose pixel data was
    # deleted on purpose, so the answer is "no pixel data", naming the possible cut.
    data = dcm("CT_small.dcm").read_bytes()
    with pytest.raises(NoPixelDataError, match=r"describes a 128x128 image: .* cut off"):
        decode_dicom(data[: data.index(CT_PIXEL_DATA)])
    ds = pydicom.dcmread(dcm("CT_small.dcm"))
    del ds.PixelData
    with pytest.raises(NoPixelDataError, match="no pixel data"):
        decode_dicom(to_bytes(ds))


def test_not_dicom() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(NotDicomError, match="not a DICOM file"):
        decode_dicom(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageDecodeError):
        decode_dicom(b"\x89PNG\r\n\x1a\n" + bytes(200))


def test_missing_codec_plugin_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    decoder_cls = type(pydicom.pixels.get_decoder(JPEGLSLossless))
    monkeypatch.setattr(decoder_cls, "is_available", property(lambda self: False))
    with pytest.raises(UnsupportedCodecError, match="pip install pyjpegls") as info:
        decode_dicom(dcm("MR_small_jpeg_ls_lossless.dcm"))
    assert info.value.install == ("pyjpegls",)


def test_jpeg_ls_falls_back_to_pydicom_plugin_order(monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = pydicom.pixels.get_decoder(JPEGLSLossless)
    if not {"pyjpegls", "pylibjpeg"} <= set(decoder.available_plugins):
        pytest.skip("needs both JPEG-LS plugins")
    reference = decode_dicom(dcm("MR_small_jpeg_ls_lossless.dcm")).pixels

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("plugin failure")

    # The decoder prefers pyjpegls; when it fails, pydicom's own order (pylibjpeg) decodes.
    monkeypatch.setitem(decoder._available, "pyjpegls", broken)
    fallback = decode_dicom(dcm("MR_small_jpeg_ls_lossless.dcm")).pixels
    np.testing.assert_array_equal(fallback, reference)


def test_transfer_syntax_without_any_decoder() -> None:
    ds = pydicom.dcmread(dcm("MR_small_jp2klossless.dcm"))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.92")  # JPEG 2000 Part 2
    with pytest.raises(UnsupportedCodecError, match="no decoder exists"):
        decode_dicom(to_bytes(ds))


@pytest.mark.parametrize("name", ["rtdose_1frame.dcm", "liver_1frame.dcm"])
def test_bit_depths_outside_8_to_16_are_refused(name: str) -> None:
    with pytest.raises(UnsupportedPixelFormatError, match="8 to 16 bit"):
        decode_dicom(dcm(name))


def test_pixel_count_is_checked_before_decoding() -> None:
    ds = pydicom.dcmread(dcm("CT_small.dcm"))
    ds.Rows = ds.Columns = 20_000  # 400 MP announced, 32 KiB present
    with pytest.raises(ImageTooLargeError, match="over the 50,000,000 limit") as info:
        decode_dicom(to_bytes(ds))
    assert info.value.pixels == 400_000_000
    with pytest.raises(ImageTooLargeError):
        decode_dicom(dcm("CT_small.dcm"), max_pixels=128 * 128 - 1)


# --- layout and privacy ------------------------------------------------------------------


def test_files_without_preamble_or_meta_header() -> None:
    reference = decode_dicom(dcm("CT_small.dcm")).pixels
    data = dcm("CT_small.dcm").read_bytes()
    np.testing.assert_array_equal(decode_dicom(data[128:]).pixels, reference)  # starts "DICM"
    ds = pydicom.dcmread(dcm("CT_small.dcm"))
    bare = Dataset()
    for elem in ds:
        bare.add(elem)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, bare, implicit_vr=True, little_endian=True)
    assert buf.getvalue()[:4] == b"\x08\x00\x05\x00"  # no preamble, no DICM, no group 0002
    img = decode_dicom(buf.getvalue())
    np.testing.assert_array_equal(img.pixels, reference)
    assert img.meta.transfer_syntax == "Implicit VR Little Endian"


def test_patient_key_is_salted_and_raw_identifiers_never_leave() -> None:
    ds = pydicom.dcmread(dcm("CT_small.dcm"))
    img = decode_dicom(dcm("CT_small.dcm"), salt="study-salt")
    expected = hmac.new(b"study-salt", str(ds.PatientID).encode(), hashlib.sha256).hexdigest()
    assert img.meta.patient_key == expected == patient_key(ds.PatientID, "study-salt")
    assert len(expected) == 64
    other = decode_dicom(dcm("CT_small.dcm"), salt="another-salt").meta.patient_key
    assert other != expected
    assert decode_dicom(dcm("CT_small.dcm")).meta.patient_key is None
    text = repr(img.meta) + repr(dataclasses.asdict(img.meta))
    for secret in (str(ds.PatientID), str(ds.PatientName), "CompressedSamples", ds.StudyDate):
        assert secret not in text


def test_header_voi_lut_table_is_applied() -> None:
    ds = pydicom.dcmread(dcm("MR_small.dcm"))
    raw = ds.pixel_array.astype(np.int64)  # 127..2145
    item = Dataset()
    # 4096 entries from stored value 0; output uses 12 of the declared 16 bits (a common quirk).
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = (4095 - np.arange(4096)).astype("<u2").tobytes()  # inverting table, OW
    ds.VOILUTSequence = [item]
    img = decode_dicom(to_bytes(ds))
    assert img.meta.voi == "voi-lut"
    np.testing.assert_allclose(img.pixels, (4095 - raw) / 4095, atol=1e-6)
    # An explicit window still wins over the header.
    assert decode_dicom(to_bytes(ds), window=(600, 1600)).meta.voi == "window"


def test_modality_lut_sequence_is_applied() -> None:
    ds = pydicom.dcmread(dcm("CT_small.dcm"))
    del ds.RescaleSlope
    del ds.RescaleIntercept
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "HU"
    item.LUTData = (np.arange(4096) * 3 // 2).astype("<u2").tobytes()  # OW table
    ds.ModalityLUTSequence = [item]
    data = to_bytes(ds)
    reread = pydicom.dcmread(io.BytesIO(data))
    expected = pydicom.pixels.apply_modality_lut(reread.pixel_array, reread)
    values, _ = decode_dicom_values(data)
    np.testing.assert_array_equal(values, expected.astype(np.float32))
    assert not np.array_equal(values, reread.pixel_array)


def test_palette_colour_uses_the_palette_depth() -> None:
    ds = pydicom.dcmread(dcm("examples_palette.dcm"))
    rgb = pydicom.pixels.apply_color_lut(ds.pixel_array, ds).astype(np.float64)
    img = decode_dicom(dcm("examples_palette.dcm"))
    top = np.iinfo(pydicom.pixels.apply_color_lut(ds.pixel_array, ds).dtype).max
    np.testing.assert_allclose(img.pixels, rgb @ np.array(LUMA_WEIGHTS) / top, atol=1e-6)
    assert img.meta.photometric == "PALETTE COLOR" and 0.0 < img.pixels.mean() < 0.5
