"""Task plugins (installed as ``benchmark.tasks``): what is asked of a model and how it is scored."""
