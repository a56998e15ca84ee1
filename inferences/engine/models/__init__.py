"""Model files in memory: single-file loading, the pipeline cache, device and dtype choice, compilation, invariance."""
