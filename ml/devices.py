"""Device names as users type them ("auto", "cpu", "cuda", "cuda:1"), checked without torch.

Config dataclasses validate their device field in the web tier, which must not import torch
just to parse a form; `resolve_device` turns a checked name into a `torch.device` in the job.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,2})?)$")


def check_device_name(name: object) -> str:
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ValueError(
            f"device {name!r} is not a torch device: use auto, cpu, mps, cuda or cuda:N"
        )
    return name


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when a GPU is visible, else the CPU."""
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
