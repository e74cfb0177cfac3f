"""Exponential moving average of the generator's weights (Karras et al. 2018, 2020).

The average generator gives visibly smoother samples than the raw one, so snapshots, FID and
sampling all use it. The decay is given as a half-life in thousands of images, which keeps its
meaning when the batch size changes (StyleGAN2-ADA's `ema_kimg`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_beta(batch_size: int, half_life_kimg: float) -> float:
    return 0.5 ** (batch_size / max(half_life_kimg * 1000.0, 1e-8))


def make_ema(generator: nn.Module) -> nn.Module:
    ema = copy.deepcopy(generator).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, generator: nn.Module, beta: float) -> None:
    for p_ema, p in zip(ema.parameters(), generator.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - beta)
    # Buffers (batch-norm statistics, StyleGAN's w_avg) are copied, not averaged.
    for b_ema, b in zip(ema.buffers(), generator.buffers(), strict=True):
        b_ema.copy_(b)
