"""Model plugins (installed as ``benchmark.models``). Built-in models register in ``plugin.py``."""
