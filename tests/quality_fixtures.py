"""Real image pairs for the paired-quality tests and bench/quality_metrics.py, all from installed
packages: demo chest X-rays (grey), pydicom's colour ultrasound cine (RGB), scikit-learn's
8 x 8 digits. Images are (n, C, H, W) float32 in [0, 1]."""

from __future__ import annotations

import numpy as np
import pydicom
import torch
from PIL import Image, ImageFilter
from pydicom.data import get_testdata_file
from pydicom.pixels import convert_color_space
from sklearn.datasets import load_digits

from ml.data.collections import available_collections


def cxr_pairs(n: int = 3, size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(X-rays, each next patient's X-ray, blurred copies), (n, 1, size, size) in [0, 1]."""
    files = sorted(available_collections()["paediatric-cxr"].files)[: n + 1]
    images, blurred = [], []
    for path in files:
        with Image.open(path) as im:
            grey = im.convert("L").resize((size, size), Image.Resampling.BICUBIC)
        images.append(np.asarray(grey, dtype=np.float32) / 255)
        soft = grey.filter(ImageFilter.GaussianBlur(1.2))
        blurred.append(np.asarray(soft, dtype=np.float32) / 255)
    x = torch.from_numpy(np.stack(images))[:, None]
    b = torch.from_numpy(np.stack(blurred))[:, None]
    return x[:n], x[1 : n + 1], b[:n]


def ultrasound_frames(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames 0..n-1, frames 1..n) of pydicom's colour cine, (n, 3, 240, 320) RGB in [0, 1]."""
    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm", download=False))
    rgb = convert_color_space(ds.pixel_array[: n + 1], ds.PhotometricInterpretation, "RGB")
    x = torch.from_numpy(rgb.astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()
    return x[:n], x[1 : n + 1]


def digit_pairs(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Eight-pixel digits: each against the next one of the same class, (n, 1, 8, 8) in [0, 1]."""
    digits = load_digits()
    threes = digits.images[digits.target == 3][: n + 1].astype(np.float32) / 16
    x = torch.from_numpy(threes)[:, None]
    return x[:n], x[1 : n + 1]
