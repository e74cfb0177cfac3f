"""Atomic checkpoints: a worker killed at any instant leaves either the old file or the new one.

Written to a temporary file in the same folder, fsynced, then renamed over the target; a
rename within one filesystem is atomic, so `load` never sees half a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_atomic(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    # weights_only=False: our own checkpoints also hold optimiser states, RNG states and the
    # config; they are written by this code only, never taken from an upload.
    return torch.load(path, map_location=device, weights_only=False)
