"""FTCP (Ren et al., Matter 5, 314, 2022): the ``ftcp`` variational autoencoder with a property
branch, trained on the FTCP representation (:mod:`benchmark.representations.ftcp`)."""
