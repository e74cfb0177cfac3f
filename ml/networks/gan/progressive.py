"""Progressive GAN (Karras et al. 2018, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation", ICLR), written from the paper.

Both networks are built at full size from the start (every level's layers exist, so the training
loop creates its optimisers once); `set_level(level, alpha)` picks how much of them is used.
Level 0 works at `start_resolution`, each further level doubles it. While a level fades in
(alpha < 1) its output is blended with the previous level's, as in section 2 of the paper.

The networks always produce and consume images at the full `resolution`: the generator
upsamples its output with nearest neighbour and the discriminator average-pools its input, so
the training loop never changes the data resolution.

The equalised layers, pixel norm and minibatch standard deviation layer are shared with the
StyleGAN2 module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ml.networks.gan.base import DiscriminatorOutput, GanModels

# The schedule is a pure function of the config, torch-free, so the launch form and the preset
# checks compute the same levels as training.
from ml.training.gan_config import (
    PROGAN_KIMG_PER_PHASE,
    PROGAN_START_RESOLUTION,
    progressive_schedule,
)

# Leaky ReLU slope of both papers (ProGAN section A.1, StyleGAN2 appendix).
LRELU_SLOPE = 0.2


def channels_at(resolution: int, base_channels: int, max_channels: int) -> int:
    """Feature maps at a resolution: base / resolution, capped (ProGAN table 2 halves the
    width each time the resolution doubles beyond 32, from 512)."""
    return max(1, min(max_channels, base_channels // resolution))


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each pixel's feature vector to unit length (ProGAN section 4.2)."""
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


def _log2_power(value: int, name: str) -> int:
    if value < 4 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= 4, got {value}")
    return int(math.log2(value))


class EqualizedLinear(nn.Module):
    """Fully connected layer with the equalised learning rate of ProGAN section 4.1.

    Weights are stored as N(0, 1) / lr_mul and scaled by gain * lr_mul / sqrt(fan_in) at every
    call, so Adam's step size is the same for every layer regardless of its fan-in. `lr_mul`
    slows a layer down (StyleGAN's mapping network uses 0.01, Karras et al. 2019 section C).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        gain: float = 1.0,
        lr_mul: float = 1.0,
        bias: bool = True,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul)) if bias else None
        self.scale = gain * lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, bias)


class EqualizedConv2d(nn.Module):
    """Convolution with the equalised learning rate (ProGAN section 4.1): N(0, 1) weights
    scaled by gain / sqrt(fan_in) at run time; He's gain sqrt(2) suits leaky-ReLU layers."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        gain: float = math.sqrt(2),
        padding: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2 if padding is None else padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class MinibatchStd(nn.Module):
    """Append the average standard deviation over a group of samples as one feature map
    (ProGAN section 3), so the discriminator can see a lack of variation in a batch."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        # Largest group size that divides the batch, so odd last batches still work.
        g = max(d for d in range(1, min(self.group_size, b) + 1) if b % d == 0)
        y = x.reshape(g, b // g, *x.shape[1:])
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (b // g,)
        # Sample i belongs to group member i % (b // g): tile the statistic g times.
        stat = std.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, stat], dim=1)


class Projection(nn.Module):
    """Class-conditional projection term <embed(y), phi(x)> (Miyato & Koyama 2018); scaled by
    1/sqrt(dim) so at initialisation it is the size of the unconditional output."""

    def __init__(self, n_classes: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_classes, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.embed(labels) * features).sum(dim=1) * self.scale


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


class _GConv(nn.Module):
    """Generator conv: 3x3 equalised conv, leaky ReLU, pixel norm (ProGAN table 2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = EqualizedConv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(_lrelu(self.conv(x)))


class _Levels(nn.Module):
    """Level bookkeeping shared by both networks."""

    def __init__(self, resolution: int, start_resolution: int) -> None:
        super().__init__()
        _log2_power(resolution, "resolution")
        _log2_power(start_resolution, "start_resolution")
        if start_resolution > resolution:
            raise ValueError("start_resolution must not exceed resolution")
        self.resolution = resolution
        self.start_resolution = start_resolution
        self.n_levels = int(math.log2(resolution // start_resolution)) + 1
        self.level = self.n_levels - 1
        self.alpha = 1.0

    def set_level(self, level: int, alpha: float = 1.0) -> None:
        if not 0 <= level < self.n_levels:
            raise ValueError(f"level must be in [0, {self.n_levels}), got {level}")
        self.level = level
        self.alpha = float(min(max(alpha, 0.0), 1.0))

    # Level and alpha travel with the state dict, so a network loaded from a checkpoint samples
    # at the level it was saved at, without replaying the schedule.
    def get_extra_state(self) -> dict[str, float]:
        return {"level": self.level, "alpha": self.alpha}

    def set_extra_state(self, state: dict[str, float]) -> None:
        self.set_level(int(state["level"]), float(state["alpha"]))

    @property
    def current_resolution(self) -> int:
        return self.start_resolution * 2**self.level

    def _fading(self) -> bool:
        return self.level > 0 and self.alpha < 1.0


class ProgressiveGenerator(_Levels):
    def __init__(
        self,
        resolution: int,
        n_classes: int,
        *,
        channels: int = 1,
        z_dim: int = 128,
        base_channels: int = 16384,
        max_channels: int = 512,
        start_resolution: int = 4,
    ) -> None:
        super().__init__(resolution, start_resolution)
        self.z_dim = z_dim
        self.n_classes = n_classes

        def ch(r: int) -> int:
            return channels_at(r, base_channels, max_channels)

        # Class embedding concatenated to z (the paper's conditional CIFAR-10 runs feed the
        # label to the generator's input the same way).
        self.embed = nn.Embedding(n_classes, z_dim) if n_classes > 1 else None
        latent = z_dim * (2 if self.embed is not None else 1)
        # "Conv 4x4" on a 1x1 latent is a dense layer; the paper's code gives it gain sqrt(2)/4
        # so each of the 16 outputs gets He-initialised variance.
        self.input = EqualizedLinear(latent, ch(4) * 16, gain=math.sqrt(2) / 4)
        self.blocks = nn.ModuleDict({"4": _GConv(ch(4), ch(4))})
        r = 8
        while r <= resolution:
            # Nearest-neighbour upsampling, then two 3x3 convs (ProGAN table 2).
            self.blocks[str(r)] = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                _GConv(ch(r // 2), ch(r)),
                _GConv(ch(r), ch(r)),
            )
            r *= 2
        # toRGB is linear (1x1, gain 1); the output is not squashed (ProGAN table 2).
        self.to_rgb = nn.ModuleDict(
            {
                str(start_resolution * 2**lv): EqualizedConv2d(
                    ch(start_resolution * 2**lv), channels, 1, gain=1.0
                )
                for lv in range(self.n_levels)
            }
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = z
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            x = torch.cat([z, self.embed(labels)], dim=1)
        h = _lrelu(self.input(pixel_norm(x))).reshape(z.shape[0], -1, 4, 4)
        h = self.blocks["4"](pixel_norm(h))
        cur = self.current_resolution
        previous = h
        r = 8
        while r <= cur:
            previous = h
            h = self.blocks[str(r)](h)
            r *= 2
        img = self.to_rgb[str(cur)](h)
        if self._fading():
            low = self.to_rgb[str(cur // 2)](previous)
            low = F.interpolate(low, scale_factor=2, mode="nearest")
            img = low + self.alpha * (img - low)
        if cur < self.resolution:
            img = F.interpolate(img, scale_factor=self.resolution // cur, mode="nearest")
        # Linear output while training (gradients everywhere); sampled images obey the
        # package's [-1, 1] convention.
        return img if self.training else img.clamp(-1.0, 1.0)


class ProgressiveDiscriminator(_Levels):
    def __init__(
        self,
        resolution: int,
        n_classes: int,
        *,
        channels: int = 1,
        base_channels: int = 16384,
        max_channels: int = 512,
        start_resolution: int = 4,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__(resolution, start_resolution)
        self.n_classes = n_classes

        def ch(r: int) -> int:
            return channels_at(r, base_channels, max_channels)

        self.from_rgb = nn.ModuleDict(
            {
                str(start_resolution * 2**lv): EqualizedConv2d(
                    channels, ch(start_resolution * 2**lv), 1
                )
                for lv in range(self.n_levels)
            }
        )
        # Block "r" maps r x r features to (r/2) x (r/2) (ProGAN table 2).
        self.blocks = nn.ModuleDict()
        r = 8
        while r <= resolution:
            self.blocks[str(r)] = nn.Sequential(
                EqualizedConv2d(ch(r), ch(r), 3),
                nn.LeakyReLU(LRELU_SLOPE),
                EqualizedConv2d(ch(r), ch(r // 2), 3),
                nn.LeakyReLU(LRELU_SLOPE),
                nn.AvgPool2d(2),
            )
            r *= 2
        c4 = ch(4)
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqualizedConv2d(c4 + 1, c4, 3)
        self.conv4 = EqualizedConv2d(c4, c4, 4, padding=0)  # 4x4 -> 1x1
        self.out = EqualizedLinear(c4, 1)
        self.projection = Projection(n_classes, c4) if n_classes > 1 else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> DiscriminatorOutput:
        cur = self.current_resolution
        if cur < self.resolution:
            x = F.avg_pool2d(x, self.resolution // cur)
        h = _lrelu(self.from_rgb[str(cur)](x))
        r = cur
        if cur > 4:
            h = self.blocks[str(cur)](h)
            if self._fading():
                low = _lrelu(self.from_rgb[str(cur // 2)](F.avg_pool2d(x, 2)))
                h = low + self.alpha * (h - low)
            r = cur // 2
        while r > 4:
            h = self.blocks[str(r)](h)
            r //= 2
        h = _lrelu(self.conv(self.mbstd(h)))
        h = _lrelu(self.conv4(h)).flatten(1)
        logits = self.out(h).squeeze(1)
        if self.projection is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            logits = logits + self.projection(h, labels)
        return DiscriminatorOutput(logits)


def build_progan(
    resolution: int,
    n_classes: int,
    *,
    channels: int = 1,
    z_dim: int = 128,
    base_channels: int = 16384,
    max_channels: int = 512,
    start_resolution: int = PROGAN_START_RESOLUTION,
    kimg_per_phase: float = PROGAN_KIMG_PER_PHASE,
) -> GanModels:
    """ProGAN as the paper trained it: WGAN-GP (lambda = 10) with the drift term
    epsilon = 0.001 * E[D(x)^2] (section A.1), Adam(lr 0.001, beta1 0, beta2 0.99),
    one critic step per generator step, 800k images per fade-in or stabilise phase."""
    g = ProgressiveGenerator(
        resolution,
        n_classes,
        channels=channels,
        z_dim=z_dim,
        base_channels=base_channels,
        max_channels=max_channels,
        start_resolution=start_resolution,
    )
    d = ProgressiveDiscriminator(
        resolution,
        n_classes,
        channels=channels,
        base_channels=base_channels,
        max_channels=max_channels,
        start_resolution=start_resolution,
    )

    def schedule(kimg: float) -> None:
        level, alpha = progressive_schedule(kimg, kimg_per_phase, g.n_levels)
        g.set_level(level, alpha)
        d.set_level(level, alpha)

    schedule(0.0)
    return GanModels(
        generator=g,
        discriminator=d,
        z_dim=z_dim,
        n_classes=n_classes,
        resolution=resolution,
        loss="wgan-gp",
        gp_weight=10.0,
        d_steps=1,
        optimizer=(1e-3, 1e-3, 0.0, 0.99),
        schedule=schedule,
        notes={
            "family": "progan",
            # The loss module may add epsilon_drift * E[D(real)^2] to the critic loss.
            "drift_epsilon": 0.001,
            "start_resolution": start_resolution,
            "kimg_per_phase": kimg_per_phase,
            "channels_by_resolution": {
                str(4 * 2**i): channels_at(4 * 2**i, base_channels, max_channels)
                for i in range(int(math.log2(resolution)) - 1)
            },
        },
    )
