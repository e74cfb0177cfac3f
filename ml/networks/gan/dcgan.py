"""Conditional DCGAN-style networks and the four families built on them.

One generator (Radford et al. 2016, "Unsupervised Representation Learning with Deep
Convolutional GANs": transposed convolutions, BatchNorm, ReLU, tanh output) and one
discriminator skeleton (strided convolutions, LeakyReLU 0.2) whose normalisation, spectral
normalisation and heads differ by family:

* DCGAN   - BatchNorm in D, projection conditioning, non-saturating loss;
* WGAN-GP - no normalisation in the critic (Gulrajani et al. 2017: a batch-normalised critic
  breaks the per-sample gradient penalty), Wasserstein loss with gradient penalty;
* SNGAN   - spectral normalisation on every D layer (Miyato et al. 2018), hinge loss with the
  projection discriminator's settings (Miyato & Koyama 2018);
* AC-GAN  - BatchNorm in D, an auxiliary classifier head instead of projection (Odena et al.
  2017).

Conditioning: G concatenates a class embedding to z; D adds the projection term
`<embed(y), h>` to its logit (Miyato & Koyama 2018), except AC-GAN, which classifies instead.
With `n_classes == 1` both networks are unconditional and ignore labels.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ml.networks.gan.base import DiscriminatorOutput, GanModels

Norm = Literal["batch", "none"]

# Radford et al. 2016 cap widths at 8x the base (1024 channels at 4x4 for 64x64 with base 128);
# without a cap a 256x256 model would reach 32x base channels at 4x4.
_MAX_WIDTH_MULT = 8
_LEAKY_SLOPE = 0.2  # Radford et al. 2016
_INIT_STD = 0.02  # Radford et al. 2016: all weights from N(0, 0.02)


def _check(resolution: int, n_classes: int) -> None:
    if resolution < 16 or resolution > 256 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two in [16, 256], got {resolution}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")


def stage_widths(resolution: int, base_channels: int) -> list[int]:
    """Channel widths from the 4x4 stage up to resolution/2 (G's order; D uses the reverse)."""
    n_up = int(math.log2(resolution)) - 2
    return [base_channels * min(2 ** (n_up - 1 - i), _MAX_WIDTH_MULT) for i in range(n_up)]


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights N(0, 0.02), BatchNorm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, _INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, _INIT_STD)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    def __init__(
        self,
        resolution: int,
        n_classes: int,
        *,
        channels: int = 1,
        z_dim: int = 128,
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        _check(resolution, n_classes)
        self.z_dim, self.n_classes = z_dim, n_classes
        widths = stage_widths(resolution, base_channels)
        # The class code gets as many dimensions as z so neither swamps the other at layer one.
        self.embed = nn.Embedding(n_classes, z_dim) if n_classes > 1 else None
        in_dim = z_dim * (2 if self.embed is not None else 1)
        # The "fully connected" projection of z to 4x4 is a transposed conv on a 1x1 map.
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in itertools.pairwise(widths):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        # No BatchNorm on the output layer (Radford et al. 2016: it caused sample oscillation).
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)
        if self.embed is not None:
            # The embedding stands in for a one-hot code next to z ~ N(0, 1); at N(0, 0.02) the
            # class signal would start 50x weaker than the noise.
            nn.init.normal_(self.embed.weight, 0.0, 1.0)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """Strided-conv discriminator down to 4x4 features `h`, then a 4x4 conv to one logit.

    `norm="batch"` gives the DCGAN discriminator, `"none"` the WGAN-GP critic / SNGAN body;
    `spectral=True` wraps every layer (embedding included, as Miyato & Koyama's code does) in
    spectral normalisation; `aux_classifier=True` swaps the projection term for an AC-GAN head.
    """

    def __init__(
        self,
        resolution: int,
        n_classes: int,
        *,
        channels: int = 1,
        base_channels: int = 64,
        norm: Norm = "batch",
        spectral: bool = False,
        aux_classifier: bool = False,
    ) -> None:
        super().__init__()
        _check(resolution, n_classes)
        self.n_classes = n_classes
        widths = stage_widths(resolution, base_channels)[::-1]
        # No normalisation on the input layer (Radford et al. 2016).
        layers: list[nn.Module] = [
            nn.Conv2d(channels, widths[0], 4, 2, 1),
            nn.LeakyReLU(_LEAKY_SLOPE, inplace=True),
        ]
        for c_in, c_out in itertools.pairwise(widths):
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(_LEAKY_SLOPE, inplace=True))
        self.body = nn.Sequential(*layers)
        feat = widths[-1]
        self.head = nn.Conv2d(feat, 1, 4, 1, 0)
        self.classifier = nn.Linear(feat * 16, n_classes) if aux_classifier else None
        use_projection = n_classes > 1 and not aux_classifier
        self.embed = nn.Embedding(n_classes, feat) if use_projection else None
        init_weights(self)
        if self.embed is not None:
            # Glorot, as in Miyato & Koyama's code: at N(0, 0.02) the projection term starts
            # negligible and, in our toy runs, G learned the class mapping late or swapped.
            nn.init.xavier_uniform_(self.embed.weight)
        if spectral:
            # After init: the parametrisation starts its power iteration from these weights.
            for m in list(self.modules()):
                if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding):
                    spectral_norm(m)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> DiscriminatorOutput:
        h = self.body(x)  # (B, C, 4, 4)
        logits = self.head(h).flatten()
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            # Projection on globally sum-pooled features (Miyato & Koyama 2018, eq. 3).
            logits = logits + (self.embed(labels) * h.sum(dim=(2, 3))).sum(dim=1)
        class_logits = self.classifier(h.flatten(1)) if self.classifier is not None else None
        return DiscriminatorOutput(logits, class_logits)


def _generator(
    resolution: int, n_classes: int, channels: int, z_dim: int, base_channels: int
) -> Generator:
    return Generator(
        resolution, n_classes, channels=channels, z_dim=z_dim, base_channels=base_channels
    )


def _notes(arch: str, resolution: int, channels: int, base_channels: int) -> dict[str, object]:
    widths = stage_widths(resolution, base_channels)
    return {
        "arch": arch,
        "channels": channels,
        "base_channels": base_channels,
        "g_widths": widths,
        "d_widths": widths[::-1],
    }


def build_dcgan(
    resolution: int, n_classes: int, *, channels: int = 1, z_dim: int = 128, base_channels: int = 64
) -> GanModels:
    """Conditional DCGAN; Adam(2e-4, beta1 0.5) from Radford et al. 2016."""
    return GanModels(
        generator=_generator(resolution, n_classes, channels, z_dim, base_channels),
        discriminator=Discriminator(
            resolution, n_classes, channels=channels, base_channels=base_channels
        ),
        z_dim=z_dim,
        n_classes=n_classes,
        resolution=resolution,
        loss="non-saturating",
        optimizer=(2e-4, 2e-4, 0.5, 0.999),
        notes=_notes("dcgan", resolution, channels, base_channels),
    )


def build_wgan_gp(
    resolution: int, n_classes: int, *, channels: int = 1, z_dim: int = 128, base_channels: int = 64
) -> GanModels:
    """WGAN-GP: lambda 10, 5 critic steps, Adam(1e-4, 0.0, 0.9) (Gulrajani et al. 2017, Alg. 1)."""
    return GanModels(
        generator=_generator(resolution, n_classes, channels, z_dim, base_channels),
        discriminator=Discriminator(
            resolution, n_classes, channels=channels, base_channels=base_channels, norm="none"
        ),
        z_dim=z_dim,
        n_classes=n_classes,
        resolution=resolution,
        loss="wgan-gp",
        gp_weight=10.0,
        d_steps=5,
        optimizer=(1e-4, 1e-4, 0.0, 0.9),
        notes=_notes("wgan-gp", resolution, channels, base_channels),
    )


def build_sngan(
    resolution: int, n_classes: int, *, channels: int = 1, z_dim: int = 128, base_channels: int = 64
) -> GanModels:
    """SNGAN with projection: hinge loss, Adam(2e-4, 0.0, 0.9), 5 D steps per G step
    (Miyato & Koyama 2018, section 5)."""
    return GanModels(
        generator=_generator(resolution, n_classes, channels, z_dim, base_channels),
        discriminator=Discriminator(
            resolution,
            n_classes,
            channels=channels,
            base_channels=base_channels,
            norm="none",
            spectral=True,
        ),
        z_dim=z_dim,
        n_classes=n_classes,
        resolution=resolution,
        loss="hinge",
        d_steps=5,
        optimizer=(2e-4, 2e-4, 0.0, 0.9),
        notes=_notes("sngan", resolution, channels, base_channels),
    )


def build_acgan(
    resolution: int, n_classes: int, *, channels: int = 1, z_dim: int = 128, base_channels: int = 64
) -> GanModels:
    """AC-GAN: auxiliary class head, class loss weight 1 for G and D (Odena et al. 2017), on
    the DCGAN body and optimiser. With one class the head is kept (its loss is exactly zero) so
    the output contract does not depend on the dataset."""
    return GanModels(
        generator=_generator(resolution, n_classes, channels, z_dim, base_channels),
        discriminator=Discriminator(
            resolution,
            n_classes,
            channels=channels,
            base_channels=base_channels,
            aux_classifier=True,
        ),
        z_dim=z_dim,
        n_classes=n_classes,
        resolution=resolution,
        loss="non-saturating",
        aux_weight=1.0,
        optimizer=(2e-4, 2e-4, 0.5, 0.999),
        notes=_notes("acgan", resolution, channels, base_channels),
    )
