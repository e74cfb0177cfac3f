"""Re-encode every image a reader sees the same way, whatever its origin.

Blinding fails as soon as anything but the pixels differs between real and synthetic images:
pixel size, bit depth, colour type, an EXIF block from a camera pipeline, a tEXt chunk written
by a generator script, an ICC profile, even the PNG encoder's choices. So the PNG is written
here byte by byte (IHDR, IDAT, IEND and nothing else) instead of trusting a library's defaults.

Geometry rule: the image is scaled (Lanczos, anti-aliased, on float data) so its longer side is
exactly `size`, keeping the aspect ratio, then centred on a black `size` x `size` square; an odd
leftover pixel of padding goes to the bottom / right.

Use one variant per study: mixing `canonical_png` and `canonical_png16` in one study would let
the bit depth reveal which pipeline an image came from.
"""

from __future__ import annotations

import secrets
import struct
import zlib
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_SIZE = 512
# Fixed so identical pixels always give identical bytes (and ETags) on a given zlib.
COMPRESS_LEVEL = 6
_GREYSCALE_COLOUR_TYPE = 0
_RGB_COLOUR_TYPE = 2


class HasPixels(Protocol):
    """Anything shaped like ml.data's DecodedImage; a Protocol keeps this module import-light."""

    @property
    def pixels(self) -> NDArray[np.floating]: ...


ImageInput = HasPixels | NDArray[np.floating]


def canonical_png(img: ImageInput, *, size: int = DEFAULT_SIZE) -> bytes:
    """8-bit greyscale `size` x `size` PNG with no ancillary chunks, deterministic bytes."""
    square = _fit_square(_as_unit_float(img), size)
    return encode_grey_png(_quantise(square, np.uint8))


def canonical_png16(img: ImageInput, *, size: int = DEFAULT_SIZE) -> bytes:
    """16-bit greyscale variant for studies where the browser applies window/level, so the
    source's full precision must survive; same geometry and no-metadata rule."""
    square = _fit_square(_as_unit_float(img), size)
    return encode_grey_png(_quantise(square, np.uint16))


def canonical_png_rgb(pixels: NDArray[np.floating], *, size: int = DEFAULT_SIZE) -> bytes:
    """8-bit RGB variant for colour images ((3, h, w) float in [0, 1]): each channel through
    `canonical_png`'s geometry, the same no-metadata rule."""
    arr = np.asarray(pixels)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"expected (3, h, w) colour pixels, got shape {arr.shape}")
    square = np.stack([_fit_square(_as_unit_float(channel), size) for channel in arr], axis=-1)
    return encode_rgb_png(_quantise(square, np.uint8))


def encode_rgb_png(pixels: NDArray[np.uint8]) -> bytes:
    """Minimal PNG (IHDR, one IDAT, IEND) of an (h, w, 3) uint8 array."""
    arr = np.asarray(pixels)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
        raise ValueError(f"expected a non-empty (h, w, 3) uint8 array, got {arr.dtype} {arr.shape}")
    height, width = arr.shape[:2]
    filtered = _paeth_filter(np.ascontiguousarray(arr).reshape(height, width * 3), bpp=3)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, _RGB_COLOUR_TYPE, 0, 0, 0)
    idat = zlib.compress(filtered.tobytes(), COMPRESS_LEVEL)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encode_grey_png(pixels: NDArray[np.uint8] | NDArray[np.uint16]) -> bytes:
    """Minimal PNG (IHDR, one IDAT, IEND) of a 2-D uint8 or uint16 array."""
    arr = np.asarray(pixels)
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16) or 0 in arr.shape:
        raise ValueError(
            f"expected a non-empty 2-D uint8/uint16 array, got {arr.dtype} {arr.shape}"
        )
    height, width = arr.shape
    bit_depth = arr.dtype.itemsize * 8
    # PNG stores 16-bit samples big-endian.
    raw = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder(">"))).view(np.uint8)
    raw = raw.reshape(height, width * arr.dtype.itemsize)
    filtered = _paeth_filter(raw, bpp=arr.dtype.itemsize)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, _GREYSCALE_COLOUR_TYPE, 0, 0, 0)
    idat = zlib.compress(filtered.tobytes(), COMPRESS_LEVEL)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encode_grey_png_stored(pixels: NDArray[np.uint8]) -> bytes:
    """8-bit grey PNG whose length depends only on width and height: rows unfiltered and the
    zlib stream made of stored (uncompressed) deflate blocks written here, so no compressor
    ever sees the pixels. This is what readers are served: the byte length of every image of
    a study is the same, see ``stored_png_length``."""
    arr = np.asarray(pixels)
    if arr.ndim != 2 or arr.dtype != np.uint8 or 0 in arr.shape:
        raise ValueError(f"expected a non-empty 2-D uint8 array, got {arr.dtype} {arr.shape}")
    return _png_stored(arr, _GREYSCALE_COLOUR_TYPE)


def encode_rgb_png_stored(pixels: NDArray[np.uint8]) -> bytes:
    """`encode_grey_png_stored` for an (h, w, 3) uint8 image, as a colour study serves it:
    8-bit RGB, the length fixed by width and height (``stored_png_length(w, h, 3)``)."""
    arr = np.asarray(pixels)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
        raise ValueError(f"expected a non-empty (h, w, 3) uint8 array, got {arr.dtype} {arr.shape}")
    return _png_stored(arr.reshape(arr.shape[0], -1), _RGB_COLOUR_TYPE, width=arr.shape[1])


def _png_stored(rows: NDArray[np.uint8], colour_type: int, width: int | None = None) -> bytes:
    height = rows.shape[0]
    raw = np.hstack([np.zeros((height, 1), dtype=np.uint8), rows]).tobytes()  # filter 0: None
    ihdr = struct.pack(">IIBBBBB", width or rows.shape[1], height, 8, colour_type, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", _zlib_stored(raw))
        + _chunk(b"IEND", b"")
    )


def stored_png_length(width: int, height: int, channels: int = 1) -> int:
    """Byte length of ``encode_grey_png_stored`` (``channels`` 1) or ``encode_rgb_png_stored``
    (3) for this size, whatever the pixels."""
    raw = height * (width * channels + 1)
    blocks = max(1, -(-raw // _STORED_BLOCK))
    idat = 2 + raw + 5 * blocks + 4
    return len(PNG_SIGNATURE) + (12 + 13) + (12 + idat) + 12


_STORED_BLOCK = 65_535


def _zlib_stored(data: bytes) -> bytes:
    # zlib header: deflate, 32 KiB window, "fastest" level bits; 0x7801 is divisible by 31.
    out = bytearray(b"\x78\x01")
    starts = range(0, max(len(data), 1), _STORED_BLOCK)
    for start in starts:
        block = data[start : start + _STORED_BLOCK]
        final = 1 if start + _STORED_BLOCK >= len(data) else 0
        out += struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF) + block
    return bytes(out + struct.pack(">I", zlib.adler32(data)))


def png_chunk_types(data: bytes) -> list[str]:
    """Chunk types in file order, e.g. ["IHDR", "IDAT", "IEND"]; raises ValueError if the
    bytes are not a well-formed PNG (bad signature, truncated chunk, bad CRC)."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG (bad signature)")
    types: list[str] = []
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"truncated PNG chunk header at byte {pos}")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"PNG chunk {ctype!r} runs past end of data")
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise ValueError(f"PNG chunk {ctype!r} has a bad CRC")
        types.append(ctype.decode("latin-1"))
        pos = end
        if ctype == b"IEND":
            break
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} bytes after IEND")
    return types


def opaque_id() -> str:
    """URL-safe random id with 192 bits of entropy: unguessable and carrying no order."""
    return secrets.token_urlsafe(24)


def _as_unit_float(img: ImageInput) -> NDArray[np.float32]:
    pixels = img if isinstance(img, np.ndarray) else img.pixels
    arr = np.asarray(pixels)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"expected a non-empty 2-D greyscale image, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        # Integers are ambiguous (0..255? 0..4095?); the caller must say what 1.0 means.
        raise ValueError(f"expected float pixels in [0, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values")
    if arr.min() < -1e-6 or arr.max() > 1.0 + 1e-6:
        raise ValueError(f"pixels must lie in [0, 1], got [{arr.min():.4g}, {arr.max():.4g}]")
    return np.clip(arr, 0.0, 1.0)


def _quantise(arr: NDArray[np.float32], dtype: type[np.unsignedinteger]) -> NDArray:
    # float64 so 16-bit codes round exactly (float32 loses the last bit near 65535).
    top = float(np.iinfo(dtype).max)
    return np.rint(arr.astype(np.float64) * top).astype(dtype)


def _fit_square(arr: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    height, width = arr.shape
    scale = size / max(height, width)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    if (new_h, new_w) != (height, width):
        # Resampling in float ("F" mode) avoids quantising twice; Pillow widens the Lanczos
        # kernel when shrinking, which is the anti-aliasing.
        resized = Image.fromarray(arr).resize((new_w, new_h), Image.Resampling.LANCZOS)
        # Lanczos overshoots at edges; clip back into range.
        arr = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    out = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = arr
    return out


def _paeth_filter(raw: NDArray[np.uint8], bpp: int) -> NDArray[np.uint8]:
    """Apply PNG filter type 4 (Paeth) to every scanline; predictors use unfiltered bytes,
    so the whole image filters in one vectorised pass."""
    x = raw.astype(np.int16)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    b = np.zeros_like(x)
    b[1:, :] = x[:-1, :]
    c = np.zeros_like(x)
    c[1:, bpp:] = x[:-1, :-bpp]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    filtered = ((x - pred) & 0xFF).astype(np.uint8)
    filter_byte = np.full((raw.shape[0], 1), 4, dtype=np.uint8)
    return np.hstack([filter_byte, filtered])


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + ctype
        + payload
        + struct.pack(">I", zlib.crc32(ctype + payload))
    )
