"""Load the generator a JSON index stands for, with a checkpoint-like state for sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ml.generators.index import read_index


def load_indexed(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    index = read_index(path)
    if index["kind"] == "per_class":
        from ml.generators.per_class import load_per_class

        return load_per_class(path.parent, index, device)
    from ml.generators.torchscript import load_torchscript

    return load_torchscript(path.parent, index, device)
