"""Decode DICOM pixel data into a display-ready float image in [0, 1].

The output never carries identifying header values: only geometry, encoding and a keyed
hash of the PatientID leave this module, so decoded images can be stored and shuffled for
blinded reader studies without leaking who the patient was.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pydicom
import pydicom.uid
from numpy.typing import NDArray
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder
from pydicom.pixels import pixel_array as _pixel_array

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

# Window presets (center, width) in Hounsfield units.
CT_WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (80.0, 200.0),
    "bone": (600.0, 2800.0),
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
}

# ITU-R BT.601 luma: the weights DICOM's YBR_FULL definition and Pillow's "L" mode use, so a
# colour DICOM and a colour PNG of the same picture give the same grey image.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

_PIXEL_DATA_TAG = 0x7FE00010
_PIXEL_DATA_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # little / big endian
_UNDEFINED_LENGTH = 0xFFFFFFFF
_TRAILING_PADDING_TAG = 0xFFFCFFFC
_GRAYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"})
_EXPLICIT_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split()
)

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
    """Map values through a DICOM VOI window (PS3.3 C.11.2.1.2) onto [0, 1]."""
    x = np.asarray(values, dtype=np.float64)
    fn = (function or "LINEAR").strip().upper()
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
            out = (x - (center - 0.5)) / (width - 1.0) + 0.5
    return np.clip(out, 0.0, 1.0).astype(np.float32)


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
    values, meta, _ = _load(source, frame=frame, salt=salt, max_pixels=max_pixels)
    return values.astype(np.float32), meta


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
    values, meta, display = _load(source, frame=frame, salt=salt, max_pixels=max_pixels)
    colour = meta.photometric not in _GRAYSCALE
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
    elif colour:
        out = np.clip(values / display.white, 0.0, 1.0).astype(np.float32)
        voi, value_range = "full-range", (0.0, display.white)
    else:
        lo, hi = float(values.min()), float(values.max())
        out = ((values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)).astype(np.float32)
        voi, value_range = "minmax", (lo, hi)
    if meta.photometric == "MONOCHROME1":
        # Inversion is a presentation step after VOI (PS3.3 C.7.6.3.1.2), hence last.
        out = 1.0 - out
        value_range = value_range[::-1] if value_range else None
    meta = replace(meta, voi=voi, window=used_window, value_range=value_range)
    return DecodedImage(pixels=np.ascontiguousarray(out, dtype=np.float32), meta=meta)


def _load(
    source: Source, *, frame: int | None, salt: str | bytes | None, max_pixels: int
) -> tuple[NDArray[np.float64], ImageMeta, _Display]:
    data = read_source_bytes(source)
    ds = _parse(data)
    rows, cols, n_frames = _check_image_header(ds, data, max_pixels)
    if n_frames > 1 and frame is None:
        raise MultiFrameError(
            f"DICOM has {n_frames} frames; pass frame=<index> (0..{n_frames - 1}) to pick one",
            n_frames,
        )
    if frame is not None and not 0 <= frame < n_frames:
        raise FrameIndexError(f"frame {frame} out of range: DICOM has {n_frames} frame(s)")
    ts = ds.file_meta.TransferSyntaxUID
    _check_codec(ts)
    arr = _decode_pixels(ds, ts, index=frame if n_frames > 1 else None)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    bits_stored = int(ds.get("BitsStored", ds.BitsAllocated))
    white = float(2**bits_stored - 1)
    if photometric in _GRAYSCALE:
        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    else:
        rgb = arr
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(arr, ds)
            # Palette entries have their own depth (8 or 16 bit), unrelated to BitsStored.
            white = float(np.iinfo(rgb.dtype).max)
        values = np.asarray(rgb, dtype=np.float64) @ np.asarray(LUMA_WEIGHTS)
    if values.shape != (rows, cols):
        raise CorruptImageError(f"decoded shape {values.shape} differs from header {rows}x{cols}")
    pid = str(ds.get("PatientID", "") or "").strip()
    meta = ImageMeta(
        source_format="dicom",
        rows=rows,
        cols=cols,
        bits_stored=bits_stored,
        photometric=photometric,
        modality=str(ds.Modality) if ds.get("Modality") else None,
        transfer_syntax=ts.name,
        patient_key=patient_key(pid, salt) if salt is not None and pid else None,
        n_frames=n_frames,
        frame=frame,
    )
    return values, meta, replace(_header_display(ds), white=white)


def _parse(data: bytes) -> Dataset:
    if not data:
        raise TruncatedFileError("file is empty (0 bytes)")
    layout = dicom_layout(data[:132])
    if layout is None:
        if len(data) < 132 and not data.strip(b"\x00"):
            raise TruncatedFileError(f"file ends inside the DICOM preamble ({len(data)} bytes)")
        raise NotDicomError("not a DICOM file (no 'DICM' marker and no recognisable dataset)")
    if layout == "dicm-no-preamble":
        data = bytes(128) + data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # force only for a bare dataset that already passed the sniffing above
            ds = pydicom.dcmread(io.BytesIO(data), force=layout == "raw")
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
    return ds


def _short_elements(ds: Dataset) -> list[tuple[int, int, int]]:
    """(tag, declared length, bytes present) for top-level values cut off by EOF."""
    short = []
    # keys(), not iteration: iterating a Dataset converts every raw element and drops lengths
    for tag in ds.keys():  # noqa: SIM118
        elem = ds.get_item(tag)
        if (
            isinstance(elem, RawDataElement)
            and tag != _TRAILING_PADDING_TAG
            and elem.length != _UNDEFINED_LENGTH
            and elem.value is not None
            and len(elem.value) < elem.length
        ):
            short.append((int(tag), elem.length, len(elem.value)))
    return short


def _check_image_header(ds: Dataset, data: bytes, max_pixels: int) -> tuple[int, int, int]:
    short = _short_elements(ds)
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise UnsupportedPixelFormatError("float pixel data is not supported")
        if short or any(t in data for t in _PIXEL_DATA_TAG_BYTES):
            raise TruncatedFileError("DICOM file is truncated (it ends inside a data element)")
        raise NoPixelDataError("DICOM has no pixel data (no (7FE0,0010) element)")
    required = ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")
    missing = [k for k in required if ds.get(k) in (None, "")]
    if missing:
        raise CorruptImageError(f"DICOM image lacks required element(s): {', '.join(missing)}")
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows < 1 or cols < 1:
        raise CorruptImageError(f"DICOM image has an empty size ({cols}x{rows})")
    if rows * cols > max_pixels:
        raise ImageTooLargeError(
            f"image is {cols}x{rows} = {rows * cols:,} pixels, over the {max_pixels:,} limit",
            rows * cols,
            max_pixels,
        )
    if any(tag == _PIXEL_DATA_TAG for tag, _, _ in short):
        _, want, have = next(s for s in short if s[0] == _PIXEL_DATA_TAG)
        raise TruncatedFileError(f"DICOM pixel data is truncated ({have} of {want} bytes)")
    bits = int(ds.BitsAllocated)
    if bits not in (8, 16):
        raise UnsupportedPixelFormatError(
            f"only 8 to 16 bit images are supported, got BitsAllocated={bits}"
        )
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric not in _GRAYSCALE | _COLOUR | {"PALETTE COLOR"}:
        raise UnsupportedPixelFormatError(f"unsupported PhotometricInterpretation {photometric!r}")
    try:
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise CorruptImageError(f"invalid NumberOfFrames {ds.NumberOfFrames!r}") from exc
    return rows, cols, max(n_frames, 1)


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
    try:
        return _pixel_array(ds, index=index)
    except ValueError as exc:
        if "less than expected" in str(exc):
            raise TruncatedFileError(f"DICOM pixel data is truncated: {exc}") from exc
        raise CorruptImageError(f"could not decode '{ts.name}' pixel data: {exc}") from exc
    except Exception as exc:  # plugin failures surface as RuntimeError and friends
        raise CorruptImageError(f"could not decode '{ts.name}' pixel data: {exc}") from exc


def _header_display(ds: Dataset) -> _Display:
    seq = ds.get("VOILUTSequence")
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
            return _Display(lut_ds=lut_ds, lut_range=(float(table.min()), float(table.max())))
        except Exception:  # noqa: S110 - a broken table falls back to the window, as viewers do
            pass
    try:
        # Multi-valued windows are alternatives; the first is the default view.
        c, w = _first_number(ds.get("WindowCenter")), _first_number(ds.get("WindowWidth"))
    except (TypeError, ValueError, IndexError):
        return _Display()
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if w <= 0 or (function == "LINEAR" and w < 1):
        return _Display()
    return _Display(window=(c, w), function=function)


def _first_number(value: object) -> float:
    if value is None:
        raise ValueError("absent")
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0]
    return float(value)  # type: ignore[arg-type]
