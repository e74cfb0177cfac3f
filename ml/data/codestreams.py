"""Check one encapsulated DICOM frame before a codec decodes it.

Codecs size their output from the codestream's own header, not from the DICOM header that the
pixel limit was checked against: a 3 KB file whose JPEG-LS header claims 60000x60000 pixels
made CharLS allocate gigabytes. Some failures are slow rather than large: CharLS spends
seconds on a JPEG-LS stream that stops before its end marker, and RLE expands 64-fold from two
bytes. Everything here reads headers and run counts only; nothing is decoded.
"""

from __future__ import annotations

import struct

import pydicom.uid
from pydicom.uid import UID

from ml.data.errors import CorruptImageError, TruncatedFileError

_JPEG = frozenset(pydicom.uid.JPEGTransferSyntaxes)
_JPEG_LS = frozenset(pydicom.uid.JPEGLSTransferSyntaxes)
_JPEG_2000 = frozenset(pydicom.uid.JPEG2000TransferSyntaxes)
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), plus JPEG-LS's SOF55 (F7).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
# Markers without a length field: TEM and RST0..RST7 (SOI is consumed before the loop).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_J2K_START = b"\xff\x4f\xff\x51"  # SOC, then SIZ, which 15444-1 A.3 requires to come second
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "
_RLE_HEADER = 64
# A segment padded to an even length, or with a stray trailing run, decodes a little past
# rows * columns; pydicom cuts that off. More than this much past it is not padding.
_RLE_SLACK = 256


def check_frame(frame: bytes, ts: UID, rows: int, cols: int) -> None:
    """Raise an ImageDecodeError unless `frame` can be decoded into `rows` x `cols` pixels
    without a codec allocating or spending more than that image needs."""
    if ts in _JPEG or ts in _JPEG_LS:
        name = "JPEG-LS" if ts in _JPEG_LS else "JPEG"
        _check_size(name, _jpeg_size(frame), rows, cols)
        # Where pydicom itself looks for EOI (trailing padding allowed); JPEG-LS stuffs a 0 bit
        # after every 0xFF in its scan data, so FF D9 there is always the real marker.
        if ts in _JPEG_LS and b"\xff\xd9" not in frame[-10:]:
            raise TruncatedFileError("JPEG-LS stream is truncated (no end-of-image marker)")
    elif ts in _JPEG_2000:
        _check_size("JPEG 2000", _j2k_size(frame), rows, cols)
    elif ts == pydicom.uid.RLELossless:
        _check_rle(frame, rows * cols)


def _check_size(name: str, size: tuple[int, int, int] | None, rows: int, cols: int) -> None:
    if size is None:
        raise CorruptImageError(f"{name} stream has no readable frame header")
    height, width, components = size
    if (height, width) != (rows, cols):
        raise CorruptImageError(
            f"{name} stream is {width}x{height} pixels but the DICOM header says {cols}x{rows}"
        )
    if not 1 <= components <= 4:
        raise CorruptImageError(f"{name} stream has {components} components; at most 4 exist")


def _jpeg_size(stream: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from the first SOF segment of a JPEG or JPEG-LS stream."""
    if not stream.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(stream):
        if stream[pos] != 0xFF:
            return None
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
        elif marker in _STANDALONE:
            pos += 2
        elif marker in _SOF:
            if pos + 10 > len(stream):
                return None
            height, width = struct.unpack_from(">HH", stream, pos + 5)
            return height, width, stream[pos + 9]
        else:
            length = struct.unpack_from(">H", stream, pos + 2)[0]
            if length < 2:
                return None
            pos += 2 + length
    return None


def _j2k_size(stream: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from the SIZ segment of a J2K codestream or JP2 file."""
    if stream.startswith(_J2K_START):
        start = 0
    elif stream.startswith(_JP2_SIGNATURE):
        start = stream.find(_J2K_START)
        if start < 0:
            return None
    else:
        return None
    if start + 40 > len(stream):
        return None
    # SIZ: Lsiz, Rsiz, then Xsiz, Ysiz, XOsiz, YOsiz (image area from offset to size), ...
    x_size, y_size, x_offset, y_offset = struct.unpack_from(">4I", stream, start + 8)
    components = struct.unpack_from(">H", stream, start + 40)[0]
    if x_offset >= x_size or y_offset >= y_size:
        return None
    return y_size - y_offset, x_size - x_offset, components


def _check_rle(frame: bytes, pixels: int) -> None:
    if len(frame) < _RLE_HEADER:
        raise TruncatedFileError("RLE frame is shorter than its 64-byte header")
    n_segments, *offsets = struct.unpack_from("<16I", frame)
    if not 1 <= n_segments <= 15:
        raise CorruptImageError(f"RLE header announces {n_segments} segments (1 to 15 exist)")
    bounds = [*offsets[:n_segments], len(frame)]
    limit = pixels + _RLE_SLACK
    for i in range(n_segments):
        start, end = bounds[i], bounds[i + 1]
        if not _RLE_HEADER <= start <= end <= len(frame):
            raise CorruptImageError(f"RLE segment {i + 1} lies outside the frame")
        if _rle_decoded_length(frame, start, end, limit) > limit:
            raise CorruptImageError(
                f"RLE segment {i + 1} decodes to more than the {pixels:,} bytes of one plane"
            )


def _rle_decoded_length(data: bytes, pos: int, end: int, limit: int) -> int:
    """What PackBits decoding of data[pos:end] yields, counted without decoding, and stopping
    once past `limit`: a bomb is refused after reading about limit / 64 bytes of it."""
    total = 0
    while pos < end and total <= limit:
        header = data[pos]
        if header < 128:  # copy the next header + 1 bytes literally
            total += min(header + 1, end - pos - 1)
            pos += header + 2
        elif header > 128:  # repeat the next byte 257 - header times
            total += 257 - header if pos + 1 < end else 0
            pos += 2
        else:  # 128 is a no-op
            pos += 1
    return total
