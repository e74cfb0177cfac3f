"""Load piq's full-reference metric modules without torchvision.

piq (PyTorch Image Quality, Apache-2.0) is the maintained PyTorch implementation of MS-GMSD,
MDSI and HaarPSI, checked by its authors against the papers' MATLAB code. Its wheel declares
torchvision, which this project does not install, and its `piq/__init__.py` imports every
metric, including FID -> `piq.base` -> `piq.feature_extractors` -> torchvision. The modules we
use (`piq.psnr`, `piq.ssim`, `piq.ms_ssim`, `piq.gmsd`, `piq.mdsi`, `piq.haarpsi`) need only
torch, numpy, `piq.utils` and `piq.functional`.

So piq is installed with `pip install --no-deps` (the Makefile's NO_DEPS_PACKAGES, pinned to
`PIQ_VERSION`: the loader relies on that release's layout), and `piq_module` imports a
submodule after registering a bare `piq` package (a module object whose `__path__` is the
installed folder) in `sys.modules`, so `piq/__init__.py` never runs. Submodules then import
each other by their absolute names as usual. Where the real package has already been imported
(an environment that does have torchvision), that one is used instead.

One consequence: in this process `import piq` gives the bare package, without the names that
`piq/__init__.py` would have bound; use `piq_module("piq.gmsd")` and the like.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import threading
import types
from types import ModuleType

PIQ_VERSION = "0.8.0"
# The submodules known to import without torchvision in PIQ_VERSION.
SUBMODULES = ("piq.psnr", "piq.ssim", "piq.ms_ssim", "piq.gmsd", "piq.mdsi", "piq.haarpsi")
INSTALL_HINT = f"pip install --no-deps piq=={PIQ_VERSION} (as the Makefile does)"

_lock = threading.Lock()


class PiqUnavailable(ImportError):
    """piq is not installed, or not the release the loader was written for."""


def _bare_package() -> ModuleType:
    found = sys.modules.get("piq")
    if found is not None:
        return found
    spec = importlib.util.find_spec("piq")  # locates the folder; runs nothing
    if spec is None or not spec.submodule_search_locations:
        raise PiqUnavailable(f"piq is not installed: {INSTALL_HINT}")
    try:
        version = importlib.metadata.version("piq")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    if version != PIQ_VERSION:
        raise PiqUnavailable(f"piq {version} is installed, the loader needs {INSTALL_HINT}")
    package = types.ModuleType("piq")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    package.__package__ = "piq"
    package.__version__ = version  # type: ignore[attr-defined]
    sys.modules["piq"] = package
    return package


def piq_module(name: str) -> ModuleType:
    """One of `SUBMODULES` (e.g. "piq.haarpsi"), imported without running piq/__init__.py."""
    if name not in SUBMODULES:
        raise ValueError(f"{name!r} is not one of the piq modules loaded here: {SUBMODULES}")
    with _lock:
        _bare_package()
        return importlib.import_module(name)
