"""Dataset plugins (installed as ``benchmark.datasets``, never as a top-level ``datasets``)."""
