"""Errors raised when an image cannot be decoded; each carries a `reason` safe to show a user.

Shared by the DICOM decoder and the PNG / JPEG loader so callers catch one hierarchy whatever
the format; `ml.data.dicom` and `ml.data.images` re-export these names.
"""

from __future__ import annotations

from collections.abc import Sequence


class ImageDecodeError(ValueError):
    """An image could not be turned into pixels; `reason` is safe to show to a user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TruncatedFileError(ImageDecodeError):
    """The file ends before the data it announces."""


class NotDicomError(ImageDecodeError):
    """The bytes are not a DICOM file."""


class NotAnImageError(ImageDecodeError):
    """The bytes are none of the supported image formats."""


class CorruptImageError(ImageDecodeError):
    """The format is recognised but its content is inconsistent."""


class NoPixelDataError(ImageDecodeError):
    """A DICOM file without an image in it (e.g. a structured report)."""


class UnsupportedCodecError(ImageDecodeError):
    """The transfer syntax cannot be decoded here; `install` names the pip packages to add."""

    def __init__(self, reason: str, install: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.install = tuple(install)


class UnsupportedPixelFormatError(ImageDecodeError):
    """Pixel layout outside what we serve (bit depth, colour model, float pixels)."""


class MultiFrameError(ImageDecodeError):
    """A multi-frame DICOM was given without choosing a frame."""

    def __init__(self, reason: str, n_frames: int) -> None:
        super().__init__(reason)
        self.n_frames = n_frames


class FrameIndexError(ImageDecodeError):
    """The requested frame does not exist."""


class ImageTooLargeError(ImageDecodeError):
    """Refused before decoding so a crafted header cannot exhaust memory.

    `pixels` is the announced pixel count, 0 where Pillow refused before reporting it.
    """

    def __init__(self, reason: str, pixels: int, max_pixels: int) -> None:
        super().__init__(reason)
        self.pixels = pixels
        self.max_pixels = max_pixels
