"""Decode DICOM pixel data into a display-ready float image in [0, 1].

The output never carries identifying header values: only geometry, encoding and a keyed
hash of the PatientID leave this module, so decoded images can be stored and shuffled for
blinded reader studies without leaking who the patient was.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, NoReturn

import numpy as np
import pydicom
import pydicom.uid
from numpy.typing import NDArray
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder
from pydicom.pixels import pixel_array as _pixel_array
from pydicom.tag import BaseTag, Tag

from ml.data.codestreams import check_frame
from ml.data.ct_windows import CT_WINDOW_PRESETS as CT_WINDOW_PRESETS
from ml.data.decoded import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from ml.data.decoded import DecodedImage as DecodedImage
from ml.data.decoded import ImageMeta as ImageMeta
from ml.data.decoded import Source as Source
from ml.data.decoded import patient_key as patient_key
from ml.data.decoded import read_source_bytes as read_source_bytes

# Re-exported: these lived here before ml.data.errors / ml.data.decoded, and callers import them
# from this module.
from ml.data.errors import CorruptImageError as CorruptImageError
from ml.data.errors import FrameIndexError as FrameIndexError
from ml.data.errors import ImageDecodeError as ImageDecodeError
from ml.data.errors import ImageTooLargeError as ImageTooLargeError
from ml.data.errors import MultiFrameError as MultiFrameError
from ml.data.errors import NoPixelDataError as NoPixelDataError
from ml.data.errors import NotAnImageError as NotAnImageError
from ml.data.errors import NotDicomError as NotDicomError
from ml.data.errors import TruncatedFileError as TruncatedFileError
from ml.data.errors import UnsupportedCodecError as UnsupportedCodecError
from ml.data.errors import UnsupportedPixelFormatError as UnsupportedPixelFormatError

# ITU-R BT.601 luma: the weights DICOM's YBR_FULL definition and Pillow's "L" mode use, so a
# colour DICOM and a colour PNG of the same picture give the same grey image.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_LUMA_WEIGHTS_F32 = np.asarray(LUMA_WEIGHTS, dtype=np.float32)

_PIXEL_DATA_TAG = 0x7FE00010
_NUMBER_OF_FRAMES = 0x00280008
_MODALITY_LUT_SEQUENCE = 0x00283000
_VOI_LUT_SEQUENCE = 0x00283010
_WINDOW_CENTER = 0x00281050
_WINDOW_WIDTH = 0x00281051
_PIXEL_DATA_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # little / big endian
_UNDEFINED_LENGTH = 0xFFFFFFFF
_DEFLATED_UID = pydicom.uid.DeflatedExplicitVRLittleEndian.encode()
_DEFLATE_SNIFF = 64 * 1024  # the file meta group, where the transfer syntax is named
# Bounds on what a deflated dataset may inflate to: three 16-bit samples per pixel, and room
# for the header elements (LUTs, overlays, private tags) around them.
_MAX_BYTES_PER_PIXEL = 6
_HEADER_ALLOWANCE = 16 * 1024 * 1024
_INFLATE_CHUNK = 1024 * 1024
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_TRAILING_PADDING_TAG = 0xFFFCFFFC
_CUT_INSIDE_ELEMENT = "DICOM file is truncated (it ends inside a data element)"
_GRAYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"})
_PHOTOMETRIC = _GRAYSCALE | _COLOUR | {"PALETTE COLOR"}
# Type 1 in the Image Pixel module, and all that the checks below need before decoding.
_IMAGE_KEYWORDS = ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")
# The only elements the decoder reads: what pydicom 3's decoders (`as_pixel_options`),
# `apply_modality_lut`, `apply_voi` and `apply_color_lut` look at, the SOP class (it tells a cut
# file from a non-image) and the two values that leave this module as a label or a keyed hash.
# dcmread passes over every other value without building an element for it; building them all
# (private tags, sequences, UIDs) was most of the header time. BaseTag, not keywords: dcmread
# runs Tag() on every entry for every file, and that returns a BaseTag at once.
_READ_TAGS: list[BaseTag] = sorted(
    Tag(keyword)
    for keyword in (
        # Image Pixel module
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "NumberOfFrames",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PixelDataProviderURL",
        "ExtendedOffsetTable",
        "ExtendedOffsetTableLengths",
        "PixelData",
        "FloatPixelData",
        "DoubleFloatPixelData",
        # Modality LUT and VOI LUT modules
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
        "ModalityLUTSequence",
        "WindowCenter",
        "WindowWidth",
        "VOILUTFunction",
        "VOILUTSequence",
        # Palette Color Lookup Table module
        "PixelPresentation",
        "RedPaletteColorLookupTableDescriptor",
        "GreenPaletteColorLookupTableDescriptor",
        "BluePaletteColorLookupTableDescriptor",
        "AlphaPaletteColorLookupTableDescriptor",
        "RedPaletteColorLookupTableData",
        "GreenPaletteColorLookupTableData",
        "BluePaletteColorLookupTableData",
        "AlphaPaletteColorLookupTableData",
        "SegmentedRedPaletteColorLookupTableData",
        "SegmentedGreenPaletteColorLookupTableData",
        "SegmentedBluePaletteColorLookupTableData",
        "SegmentedAlphaPaletteColorLookupTableData",
        # identity, kept only as a SOP class name, a label and a keyed hash
        "SOPClassUID",
        "Modality",
        "PatientID",
    )
)
_EXPLICIT_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split()
)
_EXPLICIT_VRS_32BIT_LENGTH = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())

# What to pip install per codec family. pydicom's own message lists every possible backend,
# which reads as noise to a user; we name the plain-wheel option the tests run with.
_UID = pydicom.uid
_CODEC_HINTS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys((_UID.JPEGLSLossless, _UID.JPEGLSNearLossless), ("pyjpegls",)),
    **dict.fromkeys(
        (
            _UID.JPEG2000Lossless,
            _UID.JPEG2000,
            _UID.HTJ2KLossless,
            _UID.HTJ2KLosslessRPCL,
            _UID.HTJ2K,
        ),
        ("pylibjpeg", "pylibjpeg-openjpeg"),
    ),
}
_DEFAULT_CODEC_HINT = ("pylibjpeg", "pylibjpeg-libjpeg")  # JPEG baseline/extended/lossless
# pydicom tries pylibjpeg before pyjpegls for JPEG-LS; CharLS (pyjpegls) decodes the same
# stream to the same values (checked on pydicom's JPEG-LS test files) about 3x faster.
_FAST_PLUGINS: dict[str, str] = dict.fromkeys(
    (_UID.JPEGLSLossless, _UID.JPEGLSNearLossless), "pyjpegls"
)


def dicom_layout(head: bytes) -> str | None:
    """Classify leading bytes as "part10", "dicm-no-preamble", "raw" (bare dataset) or None."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "part10"
    if head[:4] == b"DICM":
        return "dicm-no-preamble"
    if len(head) >= 8 and _looks_like_bare_dataset(head):
        return "raw"
    return None


def _looks_like_bare_dataset(head: bytes) -> bool:
    # A dataset without preamble starts with group 0002 (meta) or 0008 (identification);
    # requiring that plus a valid VR or a sane implicit length keeps random bytes out.
    for endian in "<>":
        group, _elem = struct.unpack(endian + "HH", head[:4])
        if group not in (0x0002, 0x0008):
            continue
        if head[4:6] in _EXPLICIT_VRS:
            return True
        if endian == "<" and struct.unpack("<I", head[4:8])[0] < 0x10000:
            return True
    return False


def apply_window(
    values: NDArray[np.floating] | NDArray[np.integer],
    center: float,
    width: float,
    function: str = "LINEAR",
) -> NDArray[np.float32]:
    """Map values through a DICOM VOI window (PS3.3 C.11.2.1.2) onto [0, 1].

    float32 input (what the decoder produces) is windowed in float32 by the linear functions,
    anything else in float64: the result is float32 either way.
    """
    fn = (function or "LINEAR").strip().upper()
    x = np.asarray(values)
    if x.dtype != np.float32 or fn == "SIGMOID":  # exp() needs float64's range
        x = x.astype(np.float64)
    if fn == "SIGMOID":
        if width <= 0:
            raise ValueError(f"window width must be > 0, got {width}")
        out = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif fn == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"window width must be > 0, got {width}")
        out = (x - (center - width / 2.0)) / width
    else:
        if width < 1:
            raise ValueError(f"LINEAR window width must be >= 1, got {width}")
        if width == 1:
            out = (x > center - 0.5).astype(np.float64)
        else:
            out = x - (center - 0.5)
            out /= width - 1.0
            out += 0.5
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def window_stack(
    hu: NDArray[np.floating] | NDArray[np.integer],
    presets: Sequence[str | tuple[float, float]] = ("brain", "subdural", "bone"),
) -> NDArray[np.float32]:
    """Window one HU image several ways into a (len(presets), H, W) stack, e.g. for a 3-channel
    network input; presets are names from CT_WINDOW_PRESETS or (center, width) pairs."""
    arr = np.asarray(hu)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D HU array, got shape {arr.shape}")
    windows = [CT_WINDOW_PRESETS[p] if isinstance(p, str) else p for p in presets]
    if not windows:
        return np.empty((0, *arr.shape), dtype=np.float32)
    return np.stack([apply_window(arr, c, w) for c, w in windows]).astype(np.float32)


@dataclass(frozen=True, slots=True)
class _Display:
    """What the header says about display, kept apart from ImageMeta because it is internal."""

    window: tuple[float, float] | None = None
    function: str = "LINEAR"
    lut_ds: Dataset | None = None  # holds only a VOI LUT Sequence, no identifying elements
    lut_range: tuple[float, float] = (0.0, 1.0)
    white: float = 1.0  # colour images: the code value of full brightness


class _Frame(NamedTuple):
    """One decoded frame in source units, and what ImageMeta and the VOI step need from its
    header; ImageMeta itself is built once, when the VOI step has run."""

    values: NDArray[np.float32]  # a new array: the VOI step may scale it in place
    rows: int
    cols: int
    bits_stored: int
    photometric: str
    modality: str | None
    transfer_syntax: str
    patient_key: str | None
    n_frames: int
    frame: int | None
    display: _Display

    def meta(
        self,
        voi: str = "minmax",
        window: tuple[float, float] | None = None,
        value_range: tuple[float, float] | None = None,
    ) -> ImageMeta:
        return ImageMeta(
            source_format="dicom",
            rows=self.rows,
            cols=self.cols,
            bits_stored=self.bits_stored,
            photometric=self.photometric,
            modality=self.modality,
            transfer_syntax=self.transfer_syntax,
            patient_key=self.patient_key,
            n_frames=self.n_frames,
            frame=self.frame,
            voi=voi,
            window=window,
            value_range=value_range,
        )


def decode_dicom_values(
    source: Source,
    *,
    frame: int | None = None,
    salt: str | bytes | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[NDArray[np.float32], ImageMeta]:
    """Decode one frame to source units before any VOI: HU for CT (Modality LUT / rescale
    applied), stored values otherwise, BT.601 luminance for colour. Feed this to
    `window_stack` or `apply_window`."""
    decoded = _load(source, frame=frame, salt=salt, max_pixels=max_pixels)
    return decoded.values, decoded.meta()


def decode_dicom(
    source: Source,
    *,
    window: tuple[float, float] | None = None,
    frame: int | None = None,
    salt: str | bytes | None = None,
    apply_header_voi: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImage:
    """Decode one DICOM frame to a float32 [0, 1] grey image, higher = brighter.

    Order: Modality LUT / rescale -> VOI (explicit `window` as (center, width), else the header
    VOI LUT or window unless `apply_header_voi` is False, else image min..max) -> MONOCHROME1
    inversion. Colour images become BT.601 luminance over their full code range.
    `meta.patient_key` is only set when a `salt` is given: an unsalted hash of an ID can be
    reversed by enumerating IDs.
    """
    decoded = _load(source, frame=frame, salt=salt, max_pixels=max_pixels)
    values, display = decoded.values, decoded.display
    colour = decoded.photometric not in _GRAYSCALE
    value_range: tuple[float, float] | None = None
    used_window: tuple[float, float] | None = None
    if window is not None:
        used_window = (float(window[0]), float(window[1]))
        out, voi = apply_window(values, *used_window), "window"
    elif apply_header_voi and not colour and display.lut_ds is not None:
        mapped = apply_voi(np.rint(values).astype(np.int64), display.lut_ds)
        lo, hi = display.lut_range
        out = np.clip((mapped - lo) / max(hi - lo, 1.0), 0.0, 1.0).astype(np.float32)
        voi = "voi-lut"
    elif apply_header_voi and not colour and display.window is not None:
        used_window = display.window
        out, voi = apply_window(values, *display.window, function=display.function), "window"
    # The two cases below scale `values` in place: _load made it for this call alone.
    elif colour:
        values /= display.white
        out = np.clip(values, 0.0, 1.0, out=values)
        voi, value_range = "full-range", (0.0, display.white)
    else:
        lo, hi = float(values.min()), float(values.max())
        out = values
        out -= lo
        if hi > lo:
            out /= hi - lo
        voi, value_range = "minmax", (lo, hi)
    if decoded.photometric == "MONOCHROME1":
        # Inversion is a presentation step after VOI (PS3.3 C.7.6.3.1.2), hence last.
        out = np.subtract(1.0, out, out=out)
        value_range = value_range[::-1] if value_range else None
    meta = decoded.meta(voi, used_window, value_range)
    return DecodedImage(pixels=np.ascontiguousarray(out, dtype=np.float32), meta=meta)


def _load(
    source: Source, *, frame: int | None, salt: str | bytes | None, max_pixels: int
) -> _Frame:
    data = read_source_bytes(source)
    try:
        return _interpret(data, frame=frame, salt=salt, max_pixels=max_pixels)
    except (ImageDecodeError, MemoryError):
        raise
    except Exception as exc:
        # pydicom converts a value from its raw bytes when it is first read, so a garbled one
        # (an unknown VR, text where a number belongs, two values where one belongs) raises
        # whatever its converter raises, wherever it is read. Found by tests/unit/test_dicom_fuzz.
        detail = f"{type(exc).__name__}: {exc}"[:200]
        raise CorruptImageError(f"DICOM header holds an invalid value ({detail})") from exc


def _interpret(
    data: bytes, *, frame: int | None, salt: str | bytes | None, max_pixels: int
) -> _Frame:
    ds, overrun = _parse(data, max_pixels)
    rows, cols, n_frames, photometric, bits_allocated = _check_image_header(
        ds, data, overrun, max_pixels
    )
    if n_frames > 1 and frame is None:
        raise MultiFrameError(
            f"DICOM has {n_frames} frames; pass frame=<index> (0..{n_frames - 1}) to pick one",
            n_frames,
        )
    if frame is not None and not 0 <= frame < n_frames:
        raise FrameIndexError(f"frame {frame} out of range: DICOM has {n_frames} frame(s)")
    ts = ds.file_meta.TransferSyntaxUID
    if not isinstance(ts, pydicom.uid.UID):  # several values, say
        raise CorruptImageError(f"invalid transfer syntax UID {ts!r}"[:200])
    _check_codec(ts)
    index = frame if n_frames > 1 else None
    if ts.is_encapsulated:
        check_frame(_encoded_frame(ds, index or 0, n_frames), ts, rows, cols)
    arr = _decode_pixels(ds, ts, index=index)
    bits_stored = int(ds.get("BitsStored", bits_allocated))
    white = float(2**bits_stored - 1)
    if photometric in _GRAYSCALE:
        values = _modality_values(arr, ds)
    else:
        rgb = arr
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(arr, ds)
            # Palette entries have their own depth (8 or 16 bit), unrelated to BitsStored.
            white = float(np.iinfo(rgb.dtype).max)
        values = _luminance(rgb)
    if values.shape != (rows, cols):
        raise CorruptImageError(f"decoded shape {values.shape} differs from header {rows}x{cols}")
    key = None
    if salt is not None:  # PatientID is read only to be hashed
        pid = str(ds.get("PatientID", "") or "").strip()
        key = patient_key(pid, salt) if pid else None
    modality = ds.get("Modality")
    return _Frame(
        values,
        rows,
        cols,
        bits_stored,
        photometric,
        str(modality) if modality else None,
        ts.name,
        key,
        n_frames,
        frame,
        _header_display(ds, white),
    )


def _modality_values(arr: NDArray[np.generic], ds: Dataset) -> NDArray[np.float32]:
    """Stored values through the Modality LUT or rescale (PS3.3 C.11.1), as float32.

    Rescaling is done here, in place on one float32 copy, rather than by apply_modality_lut,
    which makes two float64 copies: those dominated decoding time on large images, and
    modality units (HU and the like) need far less than float32's 24-bit precision.
    """
    if _MODALITY_LUT_SEQUENCE in ds and ds.ModalityLUTSequence:
        return apply_modality_lut(arr, ds).astype(np.float32)
    values = arr.astype(np.float32)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        # "inf", "nan" and "1e38" are valid DS strings; they would make NaN or infinite pixels.
        # Stored values are under 2**16 (at most 16 bits allocated), so this bounds every one.
        if not abs(slope) * 2**16 + abs(intercept) < _FLOAT32_MAX:
            raise CorruptImageError(
                f"rescale slope {slope} and intercept {intercept} give pixel values that are "
                "infinities or NaN"
            )
        values *= slope
        values += intercept
    return values


def _luminance(rgb: NDArray[np.generic]) -> NDArray[np.float32]:
    # One float32 BLAS matrix-vector product over (pixels, 3): a 3-D array @ vector runs numpy's
    # generic loop instead, several times slower on a 256x256 image.
    flat = np.ascontiguousarray(rgb, dtype=np.float32).reshape(-1, 3)
    return (flat @ _LUMA_WEIGHTS_F32).reshape(rgb.shape[:-1])


def _encoded_frame(ds: Dataset, index: int, n_frames: int) -> bytes:
    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        return get_frame(ds.PixelData, index, number_of_frames=n_frames, extended_offsets=offsets)
    except Exception as exc:  # pydicom raises several types on broken fragment lists
        raise CorruptImageError(f"encapsulated pixel data is malformed ({exc})"[:200]) from exc


def _parse(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Dataset, bool]:
    """The dataset holding only `_READ_TAGS`, and whether parsing ran past the end of `data`."""
    if not data:
        raise TruncatedFileError("file is empty (0 bytes)")
    layout = dicom_layout(data[:132])
    if layout is None:
        if len(data) < 132 and not data.strip(b"\x00"):
            raise TruncatedFileError(f"file ends inside the DICOM preamble ({len(data)} bytes)")
        raise NotDicomError("not a DICOM file (no 'DICM' marker and no recognisable dataset)")
    if layout == "dicm-no-preamble":
        data = bytes(128) + data
    meta = None if layout == "raw" else _file_meta(data)
    if meta is None and _DEFLATED_UID in data[:_DEFLATE_SNIFF]:
        # dcmread would inflate the whole rest of the file, with no bound, to read it.
        raise CorruptImageError("deflated DICOM file with a malformed file meta header")
    if meta is not None and meta[0].TransferSyntaxUID.is_deflated:
        # Parsed from the inflated dataset alone: explicit VR little endian (PS3.5 A.5).
        data = _inflate(data[meta[1] :], max_pixels)
        meta = (meta[0], 0)
    buffer = io.BytesIO(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if meta is None:
                # force only for a bare dataset that already passed the sniffing above
                ds = pydicom.dcmread(buffer, force=layout == "raw", specific_tags=_READ_TAGS)
            else:
                # What dcmread does after its own meta reader, for a standard transfer syntax.
                file_meta, start = meta
                ts = file_meta.TransferSyntaxUID
                buffer.seek(start)
                ds = read_dataset(
                    buffer, ts.is_implicit_VR, ts.is_little_endian, specific_tags=_READ_TAGS
                )
                ds.file_meta = file_meta
        except EOFError as exc:
            raise TruncatedFileError(f"DICOM file ends unexpectedly: {exc}") from exc
        except InvalidDicomError as exc:
            raise NotDicomError(f"not a valid DICOM file: {exc}") from exc
        except Exception as exc:  # pydicom raises many types on garbage headers
            raise CorruptImageError(f"unreadable DICOM header: {exc}") from exc
    if any("End of file reached" in str(w.message) for w in caught):
        raise TruncatedFileError("DICOM file ends before the end of an element (truncated)")
    if not isinstance(getattr(ds, "file_meta", None), FileMetaDataset):
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        # A bare dataset has no meta header: the encoding pydicom detected is the syntax.
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else pydicom.uid.ExplicitVRLittleEndian
            if little is not False
            else pydicom.uid.ExplicitVRBigEndian
        )
    # A value outside _READ_TAGS is passed over with a seek, which moves past the end without
    # complaint: a position beyond the data is all a file cut inside such a value leaves.
    return ds, buffer.tell() > len(data)


def _file_meta(data: bytes) -> tuple[FileMetaDataset, int] | None:
    """The transfer syntax and SOP class from a Part 10 file meta group, and where the dataset
    after it starts; None for anything but a well-formed group naming a standard, not deflated
    transfer syntax, which is left to dcmread and its recovery from malformed headers.

    The group is always explicit VR little endian (PS3.10 7.1), so a few struct reads do what
    pydicom's general reader spent a quarter of all header parsing on: building, validating
    and converting every meta element, and a FileDataset around the result. They also see a
    file cut inside the group, which dcmread reads as a short but complete header.
    """
    pos, end = 132, len(data)
    if end < pos + 8:  # not even one element after "DICM"
        raise TruncatedFileError("DICOM file ends right after its 'DICM' marker")
    uids: dict[int, str] = {}
    while data[pos : pos + 2] == b"\x02\x00":
        vr = data[pos + 4 : pos + 6]
        if pos + 8 <= end and vr not in _EXPLICIT_VRS:
            return None  # implicit VR meta, or no meta group at all
        long_length = vr in _EXPLICIT_VRS_32BIT_LENGTH
        start = pos + (12 if long_length else 8)
        if start > end:
            raise TruncatedFileError(_CUT_INSIDE_ELEMENT)
        element, length = struct.unpack_from("<H2xH", data, pos + 2)
        if long_length:
            length = struct.unpack_from("<I", data, pos + 8)[0]
        pos = start + length
        if pos > end:
            raise TruncatedFileError(_CUT_INSIDE_ELEMENT)
        if element in (0x0002, 0x0010):  # MediaStorageSOPClassUID, TransferSyntaxUID
            uids[element] = data[start:pos].rstrip(b"\x00 ").decode("ascii", "replace")
    ts = pydicom.uid.UID(uids.get(0x0010, ""))
    if not ts.is_transfer_syntax or ts.is_private:
        return None
    file_meta = FileMetaDataset()
    file_meta.TransferSyntaxUID = ts
    if 0x0002 in uids:
        file_meta.MediaStorageSOPClassUID = uids[0x0002]
    return file_meta, pos


def _inflate(deflated: bytes, max_pixels: int) -> bytes:
    """A deflated dataset, if it inflates no further than the largest image allowed could need:
    deflate reaches 1000:1, so a 1 MB file could otherwise claim a gigabyte. The size is
    counted first, a chunk at a time, so a bomb is refused holding one chunk."""
    limit = max_pixels * _MAX_BYTES_PER_PIXEL + _HEADER_ALLOWANCE
    counter = zlib.decompressobj(-zlib.MAX_WBITS)
    size, pending = 0, deflated
    try:
        while pending and not counter.eof and size <= limit:
            size += len(counter.decompress(pending, _INFLATE_CHUNK))
            pending = counter.unconsumed_tail
        size += len(counter.flush()) if size <= limit else 0
        if size > limit:
            raise ImageTooLargeError(
                f"deflated DICOM data inflates to more than {limit:,} bytes, more than an "
                f"image of the {max_pixels:,} pixel limit needs",
                0,
                max_pixels,
            )
        # A stream cut short inflates to what it holds; the parser then finds the cut.
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(deflated)
    except zlib.error as exc:
        raise CorruptImageError(f"deflated DICOM data is corrupt ({exc})") from exc


def _short_elements(ds: Dataset) -> list[tuple[int, int, int]]:
    """(tag, declared length, bytes present) for top-level values cut off by EOF."""
    short = []
    # keys(), not iteration: iterating a Dataset converts every raw element and drops lengths
    for tag in ds.keys():  # noqa: SIM118
        elem = ds.get_item(tag)
        if _is_short(elem) and tag != _TRAILING_PADDING_TAG:
            short.append((int(tag), elem.length, len(elem.value)))
    return short


def _is_short(elem: object) -> bool:
    return (
        isinstance(elem, RawDataElement)
        and elem.length != _UNDEFINED_LENGTH
        and elem.value is not None
        and len(elem.value) < elem.length
    )


class _ImageHeader(NamedTuple):
    rows: int
    cols: int
    n_frames: int
    photometric: str
    bits_allocated: int


def _check_image_header(ds: Dataset, data: bytes, overrun: bool, max_pixels: int) -> _ImageHeader:
    pixel_data = ds.get_item(_PIXEL_DATA_TAG)
    if pixel_data is None:
        _raise_no_pixel_data(ds, data, overrun)
    header = {k: ds.get(k) for k in _IMAGE_KEYWORDS}
    missing = [k for k, v in header.items() if v in (None, "")]
    if missing:
        raise CorruptImageError(f"DICOM image lacks required element(s): {', '.join(missing)}")
    rows, cols = int(header["Rows"]), int(header["Columns"])
    if rows < 1 or cols < 1:
        raise CorruptImageError(f"DICOM image has an empty size ({cols}x{rows})")
    if rows * cols > max_pixels:
        raise ImageTooLargeError(
            f"image is {cols}x{rows} = {rows * cols:,} pixels, over the {max_pixels:,} limit",
            rows * cols,
            max_pixels,
        )
    # Only pixel data cut short matters here: once it was read whole, an element after it that
    # the file cuts off (trailing padding, say) does not change the image.
    if _is_short(pixel_data):
        have, want = len(pixel_data.value), pixel_data.length
        raise TruncatedFileError(f"DICOM pixel data is truncated ({have} of {want} bytes)")
    bits = int(header["BitsAllocated"])
    if bits not in (8, 16):
        raise UnsupportedPixelFormatError(
            f"only 8 to 16 bit images are supported, got BitsAllocated={bits}"
        )
    photometric = str(header["PhotometricInterpretation"]).strip().upper()
    if photometric not in _PHOTOMETRIC:
        raise UnsupportedPixelFormatError(f"unsupported PhotometricInterpretation {photometric!r}")
    try:
        n_frames = int(ds.NumberOfFrames or 1) if _NUMBER_OF_FRAMES in ds else 1
    except (TypeError, ValueError) as exc:
        raise CorruptImageError(f"invalid NumberOfFrames {ds.NumberOfFrames!r}") from exc
    return _ImageHeader(rows, cols, max(n_frames, 1), photometric, bits)


def _raise_no_pixel_data(ds: Dataset, data: bytes, overrun: bool) -> NoReturn:
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise UnsupportedPixelFormatError("float pixel data is not supported")
    if overrun or _short_elements(ds) or any(t in data for t in _PIXEL_DATA_TAG_BYTES):
        raise TruncatedFileError(_CUT_INSIDE_ELEMENT)
    # A file cut exactly between two elements parses cleanly; only what the header promises
    # can show the cut. Every "... Image Storage" SOP class requires the Image Pixel module, and
    # elements are stored in ascending tag order, so an image whose group 0028 is missing ends
    # before it. A cut between group 0028 and the pixel data leaves a header that cannot be told
    # from one whose pixel data was stripped on purpose: that stays "no pixel data", with a hint.
    missing = [k for k in _IMAGE_KEYWORDS if ds.get(k) in (None, "")]
    sop_class = pydicom.uid.UID(
        str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID") or "")
    )
    if missing and "Image Storage" in sop_class.name:
        raise TruncatedFileError(
            f"DICOM file is truncated: a '{sop_class.name}' object describes and holds an "
            f"image, but this one ends before its {', '.join(missing)} and pixel data"
        )
    hint = (
        ""
        if missing
        else f", although its header describes a {ds.Columns}x{ds.Rows} image: the file may "
        "be cut off just before it"
    )
    raise NoPixelDataError(f"DICOM has no pixel data (no (7FE0,0010) element){hint}")


def _check_codec(ts: pydicom.uid.UID) -> None:
    if not ts.is_transfer_syntax:
        raise UnsupportedCodecError(f"unknown transfer syntax {ts!s}")
    if not ts.is_compressed:
        return
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise UnsupportedCodecError(
            f"no decoder exists for transfer syntax '{ts.name}' ({ts})"
        ) from exc
    if not decoder.is_available:
        install = _CODEC_HINTS.get(ts, _DEFAULT_CODEC_HINT)
        raise UnsupportedCodecError(
            f"cannot decode '{ts.name}': no pixel-data plugin installed; "
            f"pip install {' '.join(install)}",
            install,
        )


def _decode_pixels(ds: Dataset, ts: pydicom.uid.UID, index: int | None) -> NDArray[np.generic]:
    plugin = _FAST_PLUGINS.get(ts)
    if plugin and plugin in get_decoder(ts).available_plugins:
        try:
            return _pixel_array(ds, index=index, decoding_plugin=plugin)
        except Exception:  # noqa: S110 - pydicom's own plugin order below gives the error
            pass
    try:
        return _pixel_array(ds, index=index)
    except ValueError as exc:
        if "less than expected" in str(exc):
            raise TruncatedFileError(f"DICOM pixel data is truncated: {exc}") from exc
        raise CorruptImageError(f"could not decode '{ts.name}' pixel data: {exc}") from exc
    except Exception as exc:  # plugin failures surface as RuntimeError and friends
        raise CorruptImageError(f"could not decode '{ts.name}' pixel data: {exc}") from exc


def _header_display(ds: Dataset, white: float) -> _Display:
    # Tag tests first: most images have neither a VOI LUT nor a window, and a keyword lookup
    # of an absent element costs pydicom an exception.
    seq = ds.VOILUTSequence if _VOI_LUT_SEQUENCE in ds else None
    if seq:
        lut_ds = Dataset()
        lut_ds.file_meta = FileMetaDataset()  # apply_voi needs the byte order of OW tables
        lut_ds.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        lut_ds.VOILUTSequence = [seq[0]]
        try:
            n_entries, first = int(seq[0].LUTDescriptor[0]) or 2**16, int(seq[0].LUTDescriptor[1])
            # The table's own output span, not its nominal depth: many writers declare 16 bits
            # and fill 12, which would otherwise display as a dark image.
            table = apply_voi(np.arange(first, first + n_entries, dtype=np.int64), lut_ds)
            lut_range = (float(table.min()), float(table.max()))
            return _Display(lut_ds=lut_ds, lut_range=lut_range, white=white)
        except Exception:  # noqa: S110 - a broken table falls back to the window, as viewers do
            pass
    if _WINDOW_CENTER not in ds or _WINDOW_WIDTH not in ds:
        return _Display(white=white)
    try:
        # Multi-valued windows are alternatives; the first is the default view.
        c, w = _first_number(ds.WindowCenter), _first_number(ds.WindowWidth)
    except (TypeError, ValueError, IndexError):
        return _Display(white=white)
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    # "nan" and "1e400" are valid DS strings; a window made of them would display as NaN.
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0 or (function == "LINEAR" and w < 1):
        return _Display(white=white)
    return _Display(window=(c, w), function=function, white=white)


def _first_number(value: object) -> float:
    if value is None:
        raise ValueError("absent")
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0]
    return float(value)  # type: ignore[arg-type]
