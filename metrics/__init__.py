"""Metric plugins (installed as ``benchmark.metrics``): the published CDVAE evaluation protocol and
further metrics, each a named plugin."""
