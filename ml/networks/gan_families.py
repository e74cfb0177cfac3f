"""GAN family names for forms and checks, without importing torch (see ml.networks.gan)."""

FAMILIES: tuple[str, ...] = ("dcgan", "wgan-gp", "sngan", "acgan", "progan", "stylegan2")
