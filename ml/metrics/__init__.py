"""Fidelity metrics: image feature extractors and FID / KID / PRDC on their features."""
