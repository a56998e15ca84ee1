"""Figures the benchmarks share."""


def percentile(values: list[float], fraction: float) -> float:
    """The value at `fraction` (0.95: p95) of the sorted values, the nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
