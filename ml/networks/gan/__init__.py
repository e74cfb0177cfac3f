"""GAN families by name. Every builder takes (resolution, n_classes, **options) and returns a
`GanModels` record (see `base.py`), so the training loop never branches on the family."""

from __future__ import annotations

from collections.abc import Callable

from ml.networks.gan.base import DiscriminatorOutput, GanModels
from ml.networks.gan.dcgan import build_acgan, build_dcgan, build_sngan, build_wgan_gp
from ml.networks.gan.progressive import build_progan
from ml.networks.gan.stylegan2 import build_stylegan2

# To add a family, import its builder above and add one entry here (e.g. "progan" from
# ml.networks.gan.progressive, "stylegan2" from ml.networks.gan.stylegan2).
ARCHS: dict[str, Callable[..., GanModels]] = {
    "dcgan": build_dcgan,
    "wgan-gp": build_wgan_gp,
    "sngan": build_sngan,
    "acgan": build_acgan,
    "progan": build_progan,
    "stylegan2": build_stylegan2,
}


def build_gan(arch: str, resolution: int, n_classes: int, **kwargs: object) -> GanModels:
    """Build family `arch`; keyword options (channels, z_dim, base_channels, ...) pass through."""
    try:
        builder = ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown GAN arch {arch!r}; known: {', '.join(sorted(ARCHS))}") from None
    return builder(resolution, n_classes, **kwargs)


__all__ = ["ARCHS", "DiscriminatorOutput", "GanModels", "build_gan"]
