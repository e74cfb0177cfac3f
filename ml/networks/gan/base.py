"""What every GAN family hands the training loop: two networks and how to train them.

The loop (`ml.training.gan`) knows nothing about a family beyond this record, so adding a
family means adding a builder, not editing the loop.

Conventions shared by every family:

* real images are float tensors (B, C, R, R) in [-1, 1] (C = 1 for radiographs); generators
  with a linear output (ProGAN, StyleGAN2, as in Karras et al.) may leave that range while
  training, so whatever saves or scores generated images clamps them first;
* `labels` is a LongTensor (B,) of class indices in [0, n_classes); a class is a unique label
  combination of the dataset (seed 000). With n_classes == 1 the networks are unconditional
  and ignore `labels`;
* `generator(z, labels)` takes z of shape (B, z_dim);
* `discriminator(x, labels)` returns a `DiscriminatorOutput`: realness logits (B,) and, for
  families with an auxiliary classifier (AC-GAN), class logits (B, n_classes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import nn

Loss = Literal["non-saturating", "wgan-gp", "hinge"]


class DiscriminatorOutput(NamedTuple):
    logits: torch.Tensor  # (B,)
    class_logits: torch.Tensor | None = None  # (B, n_classes) for auxiliary-classifier families


@dataclass
class GanModels:
    generator: nn.Module
    discriminator: nn.Module
    z_dim: int
    n_classes: int
    resolution: int
    loss: Loss = "non-saturating"
    # Gradient penalty weight (WGAN-GP, lambda = 10 in Gulrajani et al.).
    gp_weight: float = 0.0
    # R1 penalty on real images (StyleGAN2), applied lazily every `r1_interval` D steps.
    r1_gamma: float = 0.0
    r1_interval: int = 16
    # Weight of the auxiliary classification loss (AC-GAN) for both G and D.
    aux_weight: float = 0.0
    # Critic steps per generator step (WGAN-GP uses 5).
    d_steps: int = 1
    # Adam settings the family's paper used: (lr_g, lr_d, beta1, beta2).
    optimizer: tuple[float, float, float, float] = (2e-4, 2e-4, 0.5, 0.999)
    # Called by the loop with the images seen so far (in thousands) before every step, for
    # families whose networks change during training (progressive growing: level and fade-in).
    schedule: Callable[[float], None] | None = None
    # Free-form facts recorded with a run (e.g. the channel widths chosen).
    notes: dict[str, object] = field(default_factory=dict)
