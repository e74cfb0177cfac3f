"""Sample grids: one row per class, the same latents at every snapshot so the grids compare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 1, H, W) in [-1, 1] -> (B, H, W) uint8; (B, 3, H, W) -> (B, H, W, 3), as Pillow
    takes an RGB image."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round()
    if x.shape[1] == 1:
        return x[:, 0].to(torch.uint8).cpu().numpy()
    return x.permute(0, 2, 3, 1).to(torch.uint8).contiguous().cpu().numpy()


def save_grid(images: torch.Tensor, rows: int, path: Path, pad: int = 2) -> Path:
    """Tile (rows * cols) images row-major into one PNG with a black gutter."""
    tiles = to_uint8(images)
    n, h, w = tiles.shape[:3]
    cols = max(1, -(-n // rows))
    shape = (rows * (h + pad) + pad, cols * (w + pad) + pad, *tiles.shape[3:])
    canvas = np.zeros(shape, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + h, x : x + w] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path, format="PNG")
    return path
