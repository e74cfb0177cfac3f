"""CycleGAN networks and objective (Zhu et al. 2017, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks"), for one-channel radiographs by default.

* Generator: the ResNet of Johnson et al. 2016 ("Perceptual Losses for Real-Time Style Transfer
  and Super-Resolution") as CycleGAN's appendix writes it: c7s1-k, d2k, d4k, R4k x N,
  u2k, uk, c7s1-C, then tanh. Reflection padding around the 7x7 convolutions and inside the
  residual blocks reduces border artefacts (Zhu et al., appendix 7.2); InstanceNorm (Ulyanov
  et al. 2016) everywhere except the last layer. N = 6 blocks at <= 128 px and 9 above, as in
  the paper.
* Discriminator: the 70x70 PatchGAN of pix2pix (Isola et al. 2017): C64-C128-C256-C512, 4x4
  convolutions, LeakyReLU 0.2, InstanceNorm except on the first layer, then a 1-channel
  convolution, so it returns a grid of realness scores, one per overlapping 70x70 patch.
  `n_layers` (stride-2 layers, 3 in the paper) shrinks the patch for small images: 2 gives
  34x34 patches, enough for a 16 px test image on which the 70x70 version has no output left.

Widths are `base_channels` (64 in the paper) times 1, 2, 4 in G and 1, 2, 4, 8 in D (capped at
8x, as pix2pix's `NLayerDiscriminator`). Images are (B, C, R, R) in [-1, 1]; R must be a
multiple of 4 so G's two downsamplings and upsamplings give back the input size.

The objective lives here too, since the paper defines the model by it (section 3): least-squares
adversarial losses (Mao et al. 2017), cycle consistency (lambda 10), identity (0.5 x lambda), and
the history pool of generated images the discriminators learn from (Shrivastava et al. 2017).
The training loop (`ml.training.cyclegan`) only schedules and records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ml.training.cyclegan_config import LAMBDA_CYCLE, LAMBDA_IDENTITY

__all__ = [
    "LAMBDA_CYCLE",
    "LAMBDA_IDENTITY",
    "CycleGanNetworks",
    "ImagePool",
    "PatchDiscriminator",
    "ResnetGenerator",
    "build_cyclegan",
    "default_blocks",
    "discriminator_loss",
    "generator_losses",
    "init_weights",
    "patch_grid",
    "receptive_field",
]

_LEAKY_SLOPE = 0.2  # Isola et al. 2017 / Zhu et al. 2017
_INIT_STD = 0.02  # Zhu et al.'s code: weights from N(0, 0.02), biases zero
_MAX_D_MULT = 8  # pix2pix caps PatchGAN widths at 8x the base (512 for base 64)


def default_blocks(resolution: int) -> int:
    """Residual blocks the paper uses: 6 for 128x128 training images, 9 for 256x256 and up."""
    return 6 if resolution <= 128 else 9


def _norm(channels: int) -> nn.InstanceNorm2d:
    # affine=False, no running stats: the reference implementation's "instance" norm. Train and
    # eval behave the same, so sampling needs no mode switch.
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with reflection padding and InstanceNorm, plus the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """(B, C, R, R) -> (B, C, R, R) in [-1, 1]; R a multiple of 4."""

    def __init__(self, channels: int = 1, base_channels: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        k = base_channels
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, k, 7),
            _norm(k),
            nn.ReLU(inplace=True),
        ]
        for mult in (1, 2):  # d2k, d4k: 3x3 stride-2 convolutions
            layers += [
                nn.Conv2d(k * mult, k * mult * 2, 3, stride=2, padding=1),
                _norm(k * mult * 2),
                nn.ReLU(inplace=True),
            ]
        layers += [ResidualBlock(k * 4) for _ in range(n_blocks)]
        for mult in (4, 2):  # u2k, uk: fractionally strided 3x3 convolutions
            layers += [
                nn.ConvTranspose2d(
                    k * mult, k * mult // 2, 3, stride=2, padding=1, output_padding=1
                ),
                _norm(k * mult // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(k, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """(B, C, R, R) -> (B, 1, P, P) raw scores, P = `patch_grid(R, n_layers)`; no sigmoid."""

    def __init__(self, channels: int = 1, base_channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        k = base_channels
        layers: list[nn.Module] = [
            nn.Conv2d(channels, k, 4, stride=2, padding=1),
            nn.LeakyReLU(_LEAKY_SLOPE, inplace=True),  # no norm on the first layer (C64)
        ]
        width = k
        for i in range(1, n_layers + 1):
            nxt = k * min(2**i, _MAX_D_MULT)
            stride = 2 if i < n_layers else 1  # the last C-layer (C512) keeps the size
            layers += [
                nn.Conv2d(width, nxt, 4, stride=stride, padding=1),
                _norm(nxt),
                nn.LeakyReLU(_LEAKY_SLOPE, inplace=True),
            ]
            width = nxt
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _layer_specs(n_layers: int) -> list[int]:
    """Strides of the PatchGAN's 4x4 convolutions, input to output."""
    return [2] * n_layers + [1, 1]


def receptive_field(n_layers: int = 3) -> int:
    """Side of the input patch one output score sees: 70 for the paper's 3 layers."""
    size = 1
    for stride in reversed(_layer_specs(n_layers)):
        size = (size - 1) * stride + 4
    return size


def patch_grid(resolution: int, n_layers: int = 3) -> int:
    """Side of the discriminator's output grid for a `resolution` input (0: too small)."""
    size = resolution
    for stride in _layer_specs(n_layers):
        size = (size + 2 - 4) // stride + 1
        if size < 1:
            return 0
    return size


def init_weights(module: nn.Module, std: float = _INIT_STD) -> None:
    """N(0, std) convolution weights and zero biases, as Zhu et al.'s code ("normal", 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass
class CycleGanNetworks:
    """The four networks. `d_a` judges domain-A images (real A vs B->A), `d_b` domain B."""

    g_ab: ResnetGenerator
    g_ba: ResnetGenerator
    d_a: PatchDiscriminator
    d_b: PatchDiscriminator
    n_blocks: int
    receptive_field: int

    def generators(self) -> list[nn.Module]:
        return [self.g_ab, self.g_ba]

    def discriminators(self) -> list[nn.Module]:
        return [self.d_a, self.d_b]


def build_cyclegan(
    resolution: int,
    *,
    channels: int = 1,
    base_channels: int = 64,
    n_blocks: int | None = None,
    d_layers: int = 3,
) -> CycleGanNetworks:
    """Both generators and both PatchGANs, initialised; `n_blocks=None` takes the paper's."""
    if resolution % 4:
        raise ValueError(
            f"resolution must be a multiple of 4 (two 2x downsamplings), got {resolution}"
        )
    if patch_grid(resolution, d_layers) < 1:
        raise ValueError(
            f"a {d_layers}-layer PatchGAN has no output at {resolution} px; use fewer d_layers"
        )
    blocks = default_blocks(resolution) if n_blocks is None else n_blocks
    nets = CycleGanNetworks(
        g_ab=ResnetGenerator(channels, base_channels, blocks),
        g_ba=ResnetGenerator(channels, base_channels, blocks),
        d_a=PatchDiscriminator(channels, base_channels, d_layers),
        d_b=PatchDiscriminator(channels, base_channels, d_layers),
        n_blocks=blocks,
        receptive_field=receptive_field(d_layers),
    )
    for net in (*nets.generators(), *nets.discriminators()):
        init_weights(net)
    return nets


class ImagePool:
    """Past generated images for the discriminator (Shrivastava et al. 2017).

    Until full, every fake is stored and returned; then each fake is, with probability 1/2,
    swapped for a random stored one (which is returned instead), as in Zhu et al.'s code. The
    draws use the run's generator so the pool is part of the checkpointed random state.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return images.detach()
        out = []
        for image in images.detach().split(1):
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand((), generator=generator)) < 0.5:
                i = int(torch.randint(self.size, (), generator=generator))
                out.append(self.images[i])
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": [t.cpu() for t in self.images]}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.size = state["size"]
        self.images = [t.to(device) for t in state["images"]]


def _lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    # Least-squares GAN (Mao et al. 2017), the loss Zhu et al. use: targets 1 (real), 0 (fake).
    return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))


def generator_losses(
    nets: CycleGanNetworks,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    *,
    lambda_cycle: float = LAMBDA_CYCLE,
    lambda_identity: float = LAMBDA_IDENTITY,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, torch.Tensor]:
    """Total G loss, its parts, and the fakes (A->B, B->A) for the discriminator step.

    Identity weight = lambda_identity * lambda_cycle, as the paper's code scales it.
    """
    fake_b, fake_a = nets.g_ab(real_a), nets.g_ba(real_b)
    gan_ab, gan_ba = _lsgan(nets.d_b(fake_b), True), _lsgan(nets.d_a(fake_a), True)
    cycle_a = F.l1_loss(nets.g_ba(fake_b), real_a) * lambda_cycle
    cycle_b = F.l1_loss(nets.g_ab(fake_a), real_b) * lambda_cycle
    total = gan_ab + gan_ba + cycle_a + cycle_b
    stats = {"gan_ab": gan_ab, "gan_ba": gan_ba, "cycle_a": cycle_a, "cycle_b": cycle_b}
    weight = lambda_identity * lambda_cycle
    if weight > 0:
        # A generator fed an image already of its output domain should leave it alone; this
        # keeps the intensity mapping (Zhu et al. 5.2; Taigman et al. 2017).
        idt_a = F.l1_loss(nets.g_ba(real_a), real_a) * weight
        idt_b = F.l1_loss(nets.g_ab(real_b), real_b) * weight
        total = total + idt_a + idt_b
        stats |= {"idt_a": idt_a, "idt_b": idt_b}
    out = {k: float(v.detach()) for k, v in stats.items()} | {"loss_g": float(total.detach())}
    return total, out, fake_b, fake_a


def discriminator_loss(d: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    # Halved so D learns at half G's rate, as in Zhu et al.'s code.
    return 0.5 * (_lsgan(d(real), True) + _lsgan(d(fake.detach()), False))
