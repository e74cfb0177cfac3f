"""Load an uploaded image (PNG, JPEG or DICOM) into a float32 grey image in [0, 1].

The format is decided by magic bytes only: a file's name is chosen by whoever uploads it, so
trusting the extension would let a mislabelled file reach the wrong decoder. Pixel counts are
checked from the header before any pixel is decoded, so a small file that announces a huge
image cannot exhaust memory.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from ml.data.decoded import DEFAULT_MAX_PIXELS, DecodedImage, ImageMeta, Source, read_source_bytes
from ml.data.dicom import LUMA_WEIGHTS, decode_dicom, dicom_layout
from ml.data.errors import (
    CorruptImageError,
    ImageDecodeError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedFileError,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodedImage",
    "ImageDecodeError",
    "ImageMeta",
    "load_grey_image",
    "load_image",
    "load_rgb_image",
    "sniff_format",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG"}
# Every 8-bit code's value in [0, 1], computed as the float64 division rounded to float32 that
# the one-image-at-a-time path always used, so a table look-up changes no stored byte.
_UNIT8 = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)
# Where Pillow's `getexif` looks for an orientation in a PNG or JPEG: without any of these the
# image is upright, and the EXIF parse (a tenth of a small film's decode) can be skipped.
_ORIENTATION_KEYS = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def sniff_format(head: bytes) -> str | None:
    """Return "png", "jpeg" or "dicom" from the first 132+ bytes, or None."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if dicom_layout(head[:132]) is not None:
        return "dicom"
    return None


def load_image(
    source: Source,
    *,
    name_hint: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    frame: int | None = None,
    window: tuple[float, float] | None = None,
    salt: str | bytes | None = None,
) -> DecodedImage:
    """Decode PNG / JPEG / DICOM bytes to a grey float32 [0, 1] image.

    `name_hint` only labels error messages. 16-bit greyscale PNGs keep 16-bit precision;
    colour becomes BT.601 luminance; transparent pixels are composited onto black, the same
    colour `canonical_png` pads with. `frame`, `window` and `salt` are passed to
    `decode_dicom` for DICOM input and ignored otherwise.
    """
    data = read_source_bytes(source)
    label = f"{name_hint}: " if name_hint else ""
    fmt = sniff_format(data[:132])
    try:
        if fmt is None:
            kind = "empty file" if not data else "unrecognised content"
            raise NotAnImageError(f"not a supported image (PNG, JPEG or DICOM): {kind}")
        if fmt == "dicom":
            return decode_dicom(data, window=window, frame=frame, salt=salt, max_pixels=max_pixels)
        return _load_raster(data, fmt, max_pixels)
    except ImageDecodeError as exc:
        # Prefix in place so callers still get the specific error class and its fields.
        if label:
            exc.reason = label + exc.reason
            exc.args = (exc.reason,)
        raise


def load_grey_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image | None:
    """A PNG or JPEG as a 32-bit float ("F") Pillow image of `load_image`'s pixels, bit for bit.

    For an import, which resizes at once (`ml.data.resize.square_image`): an 8-bit grey film,
    the common case, then never becomes a numpy array at full size. None when `data` is not a
    PNG or JPEG (DICOM, or not an image: `load_image` decodes it or says why not). Raises
    `load_image`'s errors for a broken PNG or JPEG.
    """
    fmt = sniff_format(data[:132])
    if fmt not in _PIL_FORMAT:
        return None
    with _open_raster(data, fmt, max_pixels) as im:
        try:
            upright = _upright(im)
            if upright.mode in ("1", "L"):
                grey = upright if upright.mode == "L" else upright.convert("L")
                # Exact: Pillow scales in double precision and rounds once to float32, which
                # gives `_UNIT8` for all 256 codes (tests/unit/test_images_fast.py).
                return grey.convert("F").point(lambda v: v / 255.0)
            pixels, _ = _to_grey(upright)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise _classify(exc, _PIL_FORMAT[fmt]) from exc
    return Image.fromarray(pixels)


def load_rgb_image(
    source: Source,
    *,
    name_hint: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    window: tuple[float, float] | None = None,
) -> NDArray[np.float32]:
    """(3, h, w) float32 in [0, 1]: a PNG or JPEG's R, G, B, for a colour import.

    Transparent pixels are composited onto black, as `load_image` does; a grey file (8 or 16
    bit) and a DICOM (decoded by `load_image`, `window` applied) repeat their grey in all three
    channels, so one colour dataset can hold both.
    """
    data = read_source_bytes(source)
    fmt = sniff_format(data[:132])
    if fmt not in _PIL_FORMAT:
        grey = load_image(data, name_hint=name_hint, max_pixels=max_pixels, window=window).pixels
        return np.repeat(grey[None], 3, axis=0)
    try:
        with _open_raster(data, fmt, max_pixels) as im:
            try:
                return _to_rgb(_upright(im))
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise _classify(exc, _PIL_FORMAT[fmt]) from exc
    except ImageDecodeError as exc:
        if name_hint:
            exc.reason = f"{name_hint}: {exc.reason}"
            exc.args = (exc.reason,)
        raise


def _to_rgb(im: Image.Image) -> NDArray[np.float32]:
    """(3, h, w) in [0, 1] of a decoded raster; grey modes keep their precision, repeated."""
    if im.mode.startswith("I") or im.mode in ("1", "L", "F"):
        grey, _ = _to_grey(im)
        return np.repeat(grey[None], 3, axis=0)
    has_alpha = im.mode in ("LA", "RGBA", "PA", "La", "RGBa") or "transparency" in im.info
    codes = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    rgb = _UNIT8[codes[..., :3]]
    if has_alpha:
        # Premultiplied in float64 and rounded once, as the grey path composites.
        alpha = codes[..., 3:4].astype(np.float64) / 255.0
        rgb = (rgb.astype(np.float64) * alpha).astype(np.float32)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def _load_raster(data: bytes, fmt: str, max_pixels: int) -> DecodedImage:
    pil_format = _PIL_FORMAT[fmt]
    with _open_raster(data, fmt, max_pixels) as im:
        mode = im.mode
        try:
            pixels, bits = _to_grey(_upright(im))
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise _classify(exc, pil_format) from exc
    meta = ImageMeta(
        source_format=fmt,
        rows=int(pixels.shape[0]),
        cols=int(pixels.shape[1]),
        bits_stored=bits,
        photometric=mode,
        voi="full-range",
        value_range=(0.0, float(2**bits - 1)),
    )
    return DecodedImage(pixels=pixels, meta=meta)


def _upright(im: Image.Image) -> Image.Image:
    """`im` decoded and turned by its EXIF orientation: it is how the author saw the image, and
    the EXIF block itself is dropped later, so the rotation must be baked in now."""
    im.load()
    if any(key in im.info for key in _ORIENTATION_KEYS):
        upright = ImageOps.exif_transpose(im)
        if upright is not None:
            return upright
    return im


def _open_raster(data: bytes, fmt: str, max_pixels: int) -> Image.Image:
    """`data` opened (header only) as `fmt`, its pixel count checked against `max_pixels`."""
    pil_format = _PIL_FORMAT[fmt]
    try:
        # Image.open parses only the header. Pillow raises DecompressionBombError itself past
        # twice its global limit; below that our own, lower max_pixels check decides.
        im = Image.open(io.BytesIO(data), formats=[pil_format])
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"{pil_format} header announces an image over the decompression-bomb limit ({exc})",
            0,
            max_pixels,
        ) from exc
    except UnidentifiedImageError as exc:
        raise CorruptImageError(f"{pil_format} header is unreadable") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise _classify(exc, pil_format) from exc
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height:,} pixels, over the {max_pixels:,} limit",
            width * height,
            max_pixels,
        )
    return im


def _classify(exc: BaseException, pil_format: str) -> ImageDecodeError:
    text = str(exc)
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return TruncatedFileError(f"{pil_format} file is truncated ({text})")
    return CorruptImageError(f"{pil_format} data is corrupt ({text})")


def _to_grey(im: Image.Image) -> tuple[NDArray[np.float32], int]:
    """(pixels in [0, 1], source bits per sample) without dropping 16-bit precision."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return (np.asarray(im, dtype=np.float64) / 65535.0).astype(np.float32), 16
    if mode == "I":
        # Pillow opens some 16-bit greyscale PNGs as 32-bit "I"; their range is still 0..65535.
        arr = np.asarray(im, dtype=np.float64)
        return np.clip(arr / 65535.0, 0.0, 1.0).astype(np.float32), 16
    if mode in ("1", "L"):
        return _UNIT8[np.asarray(im if mode == "L" else im.convert("L"))], 8
    has_alpha = mode in ("LA", "RGBA", "PA", "La", "RGBa") or "transparency" in im.info
    rgba = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float64) / 255.0
    grey = rgba[..., :3] @ np.asarray(LUMA_WEIGHTS)
    if has_alpha:
        grey = grey * rgba[..., 3]
    return np.clip(grey, 0.0, 1.0).astype(np.float32), 8
