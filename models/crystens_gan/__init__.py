"""CrysTens GANs (Alverson et al., Digital Discovery 2024, Appendix B): ``crystens_gan`` (B.1) and
``crystens_wgan`` (B.2), trained on the CrysTens representation
(:mod:`benchmark.representations.crystens`)."""
