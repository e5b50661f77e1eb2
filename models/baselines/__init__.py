"""The baseline models ``replay`` and ``random`` (:mod:`benchmark.models.baselines.plugin`): the
ceiling and the floor of the generation metrics; no network."""
