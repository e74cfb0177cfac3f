"""GAN family names for forms and checks, without importing torch (see ml.networks.gan)."""

FAMILIES: tuple[str, ...] = ("dcgan", "wgan-gp", "sngan", "acgan", "progan", "stylegan2")
# Families with a mapping network, the only ones truncation psi changes (the others ignore it).
TRUNCATION_FAMILIES: tuple[str, ...] = ("stylegan2",)
