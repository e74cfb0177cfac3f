"""bench/scale_fixture.py's tree writers for tests (bench/ holds scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys

from support import ROOT

_spec = importlib.util.spec_from_file_location("scale_fixture", ROOT / "bench" / "scale_fixture.py")
assert _spec is not None and _spec.loader is not None
scale_fixture = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("scale_fixture", scale_fixture)
_spec.loader.exec_module(scale_fixture)

write_chexpert_tree = scale_fixture.write_chexpert_tree
write_rsna_tree = scale_fixture.write_rsna_tree

__all__ = ["scale_fixture", "write_chexpert_tree", "write_rsna_tree"]
