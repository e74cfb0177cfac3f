"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN",
CVPR), written from the paper, with the class conditioning of StyleGAN2-ADA (Karras et al.
2020, "Training Generative Adversarial Networks with Limited Data", NeurIPS).

Generator: mapping network (z and a class embedding -> w), a learned constant 4x4 input,
modulated convolutions with weight demodulation (section 2.2, implemented as one grouped
convolution per layer), per-pixel noise with a learned strength, and the "skip" output
architecture (section 4.1: every resolution adds its toRGB output to the upsampled image).
Discriminator: the "residual" architecture of section 4.1 with minibatch standard deviation
and a projection term for the class.

Simplifications, for want of a need: upsampling and downsampling use bilinear interpolation
and average pooling instead of the paper's [1, 3, 3, 1] FIR filters, and there is no style
mixing regularisation (so every layer gets the same w).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ml.networks.gan.base import DiscriminatorOutput, GanModels
from ml.networks.gan.progressive import (
    LRELU_SLOPE,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStd,
    Projection,
    channels_at,
    pixel_norm,
)

NoiseMode = Literal["random", "const", "none"]
_SQRT2 = math.sqrt(2)


def _act(x: torch.Tensor) -> torch.Tensor:
    # Leaky ReLU with gain sqrt(2), keeping unit variance through the layer (StyleGAN2 code
    # convention; weights are scaled with gain 1).
    return F.leaky_relu(x, LRELU_SLOPE) * _SQRT2


class MappingNetwork(nn.Module):
    """z (and the class) -> w through `layers` FC layers at learning-rate multiplier 0.01
    (StyleGAN, Karras et al. 2019, appendix C). Tracks the average w per class for the
    truncation trick (EMA decay 0.995 as in StyleGAN); per class so that truncating a
    conditional generator keeps its class."""

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        n_classes: int,
        *,
        layers: int = 8,
        lr_mul: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("the mapping network needs at least one layer")
        self.n_classes = n_classes
        self.w_avg_beta = w_avg_beta
        self.embed = nn.Embedding(n_classes, z_dim) if n_classes > 1 else None
        dims = [z_dim * (2 if self.embed is not None else 1)] + [w_dim] * layers
        self.layers = nn.ModuleList(
            EqualizedLinear(dims[i], dims[i + 1], lr_mul=lr_mul) for i in range(layers)
        )
        self.register_buffer("w_avg", torch.zeros(n_classes, w_dim))

    def _class_index(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None:
            return torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        if labels is None:
            raise ValueError("a conditional generator needs labels")
        return labels

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        *,
        update_w_avg: bool = True,
    ) -> torch.Tensor:
        idx = self._class_index(z, labels)
        # z and the embedding are normalised separately so each carries equal weight
        # (StyleGAN2-ADA's conditioning).
        x = pixel_norm(z)
        if self.embed is not None:
            x = torch.cat([x, pixel_norm(self.embed(idx))], dim=1)
        for layer in self.layers:
            x = _act(layer(x))
        if self.training and update_w_avg:
            self._track(x.detach(), idx)
        if truncation_psi != 1.0:
            avg = self.w_avg[idx]
            x = avg + truncation_psi * (x - avg)
        return x

    @torch.no_grad()
    def _track(self, w: torch.Tensor, idx: torch.Tensor) -> None:
        sums = torch.zeros_like(self.w_avg).index_add_(0, idx, w)
        counts = torch.bincount(idx, minlength=self.n_classes).to(w.dtype)
        seen = counts > 0
        means = sums[seen] / counts[seen, None]
        self.w_avg[seen] = torch.lerp(means, self.w_avg[seen], self.w_avg_beta)


class ModulatedConv2d(nn.Module):
    """Modulated convolution (StyleGAN2 section 2.2, eq. 1-3): the style s = A(w) scales the
    weight's input channels, demodulation rescales each output channel to unit expected
    variance. One grouped convolution handles the per-sample weights."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        *,
        demodulate: bool = True,
        up: bool = False,
    ) -> None:
        super().__init__()
        # Bias 1 so styles start at identity (StyleGAN2 code convention).
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.demodulate = demodulate
        self.up = up
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.shape
        styles = self.affine(w)  # (B, in)
        weight = self.weight[None] * self.scale * styles[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        h, wd = x.shape[2:]
        out = F.conv2d(
            x.reshape(1, b * c, h, wd),
            weight.reshape(-1, c, *weight.shape[3:]),
            padding=self.padding,
            groups=b,
        )
        return out.reshape(b, -1, h, wd)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv, then noise B * strength, bias and activation (StyleGAN2 fig. 2c)."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, up: bool
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        # Zero strength: noise starts switched off and the network learns how much it wants.
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: NoiseMode,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.conv(x, w)
        if noise is not None:
            x = x + noise * self.noise_strength
        elif noise_mode == "random":
            x = x + torch.randn_like(x[:, :1]) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return _act(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, linear output (StyleGAN2 fig. 7)."""

    def __init__(self, in_channels: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class SynthesisNetwork(nn.Module):
    """Constant 4x4 input, two modulated convs per resolution, skip toRGB outputs."""

    def __init__(
        self, resolution: int, channels: int, w_dim: int, base_channels: int, max_channels: int
    ) -> None:
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")

        def ch(r: int) -> int:
            return channels_at(r, base_channels, max_channels)

        self.const = nn.Parameter(torch.randn(ch(4), 4, 4))
        self.layers = nn.ModuleList([SynthesisLayer(ch(4), ch(4), w_dim, 4, up=False)])
        self.to_rgb = nn.ModuleList([ToRGB(ch(4), channels, w_dim)])
        r = 8
        while r <= resolution:
            self.layers.append(SynthesisLayer(ch(r // 2), ch(r), w_dim, r, up=True))
            self.layers.append(SynthesisLayer(ch(r), ch(r), w_dim, r, up=False))
            self.to_rgb.append(ToRGB(ch(r), channels, w_dim))
            r *= 2
        # One w per modulated layer (convs, then toRGBs).
        self.num_ws = len(self.layers) + len(self.to_rgb)

    def noise_shapes(self) -> list[tuple[int, ...]]:
        """(1, r, r) for each layer's noise input, in layer order."""
        return [tuple(layer.noise_const.shape[1:]) for layer in self.layers]

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: NoiseMode = "random",
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """ws: (B, num_ws, w_dim). `noise`: one (B, 1, r, r) tensor per layer (see
        `noise_shapes`), used instead of `noise_mode`'s."""
        n_conv = len(self.layers)
        if noise is not None and len(noise) != n_conv:
            raise ValueError(f"noise needs {n_conv} tensors, one per layer; got {len(noise)}")
        given = list(noise) if noise is not None else [None] * n_conv
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], noise_mode, given[0])
        img = self.to_rgb[0](x, ws[:, n_conv])
        for i in range(1, len(self.to_rgb)):
            x = self.layers[2 * i - 1](x, ws[:, 2 * i - 1], noise_mode, given[2 * i - 1])
            x = self.layers[2 * i](x, ws[:, 2 * i], noise_mode, given[2 * i])
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            img = img + self.to_rgb[i](x, ws[:, n_conv + i])
        return img


class StyleGAN2Generator(nn.Module):
    def __init__(
        self,
        resolution: int,
        n_classes: int,
        *,
        channels: int = 1,
        z_dim: int = 512,
        w_dim: int = 512,
        base_channels: int = 16384,
        max_channels: int = 512,
        mapping_layers: int = 8,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.n_classes = n_classes
        self.mapping = MappingNetwork(z_dim, w_dim, n_classes, layers=mapping_layers)
        self.synthesis = SynthesisNetwork(resolution, channels, w_dim, base_channels, max_channels)

    def noise_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of one image's noise inputs, one per synthesis layer."""
        return self.synthesis.noise_shapes()

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: NoiseMode = "random",
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`noise`: explicit per-layer noise inputs (see `noise_shapes`) instead of fresh ones;
        sampling draws them from each image's seed so that a seed gives one image."""
        w = self.mapping(z, labels, truncation_psi)
        ws = w[:, None].expand(-1, self.synthesis.num_ws, -1)
        img = self.synthesis(ws, noise_mode, noise)
        # Linear output while training; sampled images obey the [-1, 1] convention.
        return img if self.training else img.clamp(-1.0, 1.0)


class _ResBlock(nn.Module):
    """Residual D block (StyleGAN2 fig. 7c): two 3x3 convs and a downsampling 1x1 skip,
    summed and scaled by 1/sqrt(2) to keep the variance."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, gain=1.0)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, gain=1.0)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, gain=1.0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        h = _act(self.conv0(x))
        h = _act(self.conv1(F.avg_pool2d(h, 2)))
        return (skip + h) * (1 / _SQRT2)


class StyleGAN2Discriminator(nn.Module):
    def __init__(
        self,
        resolution: int,
        n_classes: int,
        *,
        channels: int = 1,
        base_channels: int = 16384,
        max_channels: int = 512,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")

        def ch(r: int) -> int:
            return channels_at(r, base_channels, max_channels)

        self.from_rgb = EqualizedConv2d(channels, ch(resolution), 1, gain=1.0)
        blocks = []
        r = resolution
        while r > 4:
            blocks.append(_ResBlock(ch(r), ch(r // 2)))
            r //= 2
        self.blocks = nn.Sequential(*blocks)
        c4 = ch(4)
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqualizedConv2d(c4 + 1, c4, 3, gain=1.0)
        self.fc = EqualizedLinear(c4 * 16, c4)
        self.out = EqualizedLinear(c4, 1)
        self.projection = Projection(n_classes, c4) if n_classes > 1 else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> DiscriminatorOutput:
        h = self.blocks(_act(self.from_rgb(x)))
        h = _act(self.conv(self.mbstd(h)))
        h = _act(self.fc(h.flatten(1)))
        logits = self.out(h).squeeze(1)
        if self.projection is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            logits = logits + self.projection(h, labels)
        return DiscriminatorOutput(logits)


def path_length_penalty(
    generator: StyleGAN2Generator,
    z: torch.Tensor,
    labels: torch.Tensor | None,
    pl_mean: torch.Tensor | float,
    *,
    decay: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Path length regulariser (StyleGAN2 section 3.2): (||J_w^T y|| - a)^2 with y ~ N(0, I)
    / sqrt(pixels) and a the running mean of the lengths (EMA decay 0.01).

    Returns the unweighted penalty (differentiable w.r.t. the generator) and the new running
    mean (detached). The paper weights it by 2 and applies it lazily every 4 generator steps,
    scaling by that interval; both are the caller's choice.
    """
    w = generator.mapping(z, labels, update_w_avg=False)
    ws = w[:, None].repeat(1, generator.synthesis.num_ws, 1)
    img = generator.synthesis(ws)
    y = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
    lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()
    mean = torch.as_tensor(pl_mean, dtype=lengths.dtype, device=lengths.device)
    new_mean = (mean + decay * (lengths.mean().detach() - mean)).detach()
    return (lengths - new_mean).square().mean(), new_mean


def r1_gamma_heuristic(resolution: int, batch: int) -> float:
    """gamma = 0.0002 * N^2 / M for resolution N and minibatch M: the heuristic of
    StyleGAN2-ADA (Karras et al. 2020) for its baseline configuration."""
    return 0.0002 * resolution**2 / batch


def build_stylegan2(
    resolution: int,
    n_classes: int,
    *,
    channels: int = 1,
    z_dim: int = 512,
    w_dim: int = 512,
    base_channels: int = 16384,
    max_channels: int = 512,
    mapping_layers: int = 8,
    batch: int = 32,
) -> GanModels:
    """StyleGAN2 with the training settings of the papers: non-saturating loss, lazy R1 every
    16 D steps with gamma from the StyleGAN2-ADA heuristic, Adam(0.0025, beta1 0, beta2 0.99).

    `batch` is the minibatch size the run will use; it only sets gamma, so pass the real one
    (32 is StyleGAN2-ADA's single-GPU size at resolutions <= 128)."""
    g = StyleGAN2Generator(
        resolution,
        n_classes,
        channels=channels,
        z_dim=z_dim,
        w_dim=w_dim,
        base_channels=base_channels,
        max_channels=max_channels,
        mapping_layers=mapping_layers,
    )
    d = StyleGAN2Discriminator(
        resolution,
        n_classes,
        channels=channels,
        base_channels=base_channels,
        max_channels=max_channels,
    )
    return GanModels(
        generator=g,
        discriminator=d,
        z_dim=z_dim,
        n_classes=n_classes,
        resolution=resolution,
        loss="non-saturating",
        r1_gamma=r1_gamma_heuristic(resolution, batch),
        r1_interval=16,
        optimizer=(0.0025, 0.0025, 0.0, 0.99),
        notes={
            "family": "stylegan2",
            "w_dim": w_dim,
            "mapping_layers": mapping_layers,
            "r1_batch": batch,
            # Optional path length regularisation: weight 2, every 4 G steps (section 3.2).
            "pl_weight": 2.0,
            "pl_interval": 4,
            "channels_by_resolution": {
                str(4 * 2**i): channels_at(4 * 2**i, base_channels, max_channels)
                for i in range(int(math.log2(resolution)) - 1)
            },
        },
    )
