"""Element counts of a GAN family's networks, built on PyTorch's `meta` device.

Meta tensors carry shapes only: a 1024 px StyleGAN2 is "built" in milliseconds and allocates
nothing. Run as a module it answers one query as JSON on stdout, which is how the web tier
asks without importing torch itself:

    python -m ml.networks.gan_sizes dcgan 32 3 '{"base_channels": 16}'
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

from ml.networks.gan import build_gan


def count_sizes(generator: torch.nn.Module, discriminator: torch.nn.Module) -> dict[str, int]:
    def trainable(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad)

    return {
        "g_params": sum(p.numel() for p in generator.parameters()),
        "d_params": sum(p.numel() for p in discriminator.parameters()),
        "g_trainable": trainable(generator),
        "d_trainable": trainable(discriminator),
        "g_buffers": sum(b.numel() for b in generator.buffers()),
        "d_buffers": sum(b.numel() for b in discriminator.buffers()),
    }


def gan_sizes(arch: str, resolution: int, n_classes: int, options: dict[str, Any]) -> dict:
    try:
        with torch.device("meta"):
            models = build_gan(arch, resolution, n_classes, **options)
    except Exception:  # an op without a meta kernel: count real (CPU) tensors instead
        # A genuinely bad arch or option raises here again, for the caller to report.
        models = build_gan(arch, resolution, n_classes, **options)
    return count_sizes(models.generator, models.discriminator)


def main(argv: list[str]) -> int:
    arch, resolution, n_classes, options = argv
    try:
        answer = gan_sizes(arch, int(resolution), int(n_classes), json.loads(options))
    except (ValueError, TypeError) as exc:
        answer = {"error": str(exc)}
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
