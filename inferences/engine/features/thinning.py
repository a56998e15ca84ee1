"""Keeping one-pixel edges one pixel wide when a binary control map is enlarged, as sd-webui-controlnet does
(Lvmin Zhang's "High Quality Edge Thinning using Pure Python", the extension's scripts/lvminthin.py): bicubic
enlargement blurs a Canny or scribble line into a band; non-maximum suppression along the four directions keeps its
ridge, Otsu makes it binary again, and hit-or-miss thinning peels the band back to a one-pixel line (and, after an
enlargement, prunes the spurs it leaves)."""

from __future__ import annotations

import cv2
import numpy as np

Map = np.ndarray


def _rotations(*kernels: list[list[int]]) -> list[Map]:
    """Each kernel in its four quarter turns, turn by turn (all kernels at 0°, then all at 90°, ...)."""
    base = [np.array(kernel, dtype=np.int32) for kernel in kernels]
    return [np.rot90(kernel, k=turn, axes=(0, 1)) for turn in range(4) for kernel in base]


# Hit-or-miss patterns: 1 must be set, -1 must be clear, 0 either. A centre pixel matching one is removed.
THINNING = _rotations([[-1, -1, -1], [0, 1, 0], [1, 1, 1]], [[0, -1, -1], [1, 1, -1], [0, 1, 0]])
PRUNING = _rotations([[-1, -1, -1], [-1, 1, -1], [0, 0, -1]], [[-1, -1, -1], [-1, 1, -1], [-1, 0, 0]])
# The four directions a ridge may run in, for non-maximum suppression
DIRECTIONS = [
    np.array(kernel, dtype=np.uint8)
    for kernel in (
        [[0, 0, 0], [1, 1, 1], [0, 0, 0]],
        [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[0, 0, 1], [0, 1, 0], [1, 0, 0]],
    )
]


def suppress_non_maxima(grey: Map) -> Map:
    """Keep a pixel where it is the largest of its neighbours along at least one direction; others become 0."""
    kept = np.zeros_like(grey)
    for direction in DIRECTIONS:
        np.putmask(kept, cv2.dilate(grey, kernel=direction) == grey, grey)
    return kept


def _peel(binary: Map, patterns: list[Map]) -> bool:
    """Clear, pattern after pattern (each seeing the last one's result), the pixels each pattern hits. In place;
    True when any was cleared."""
    changed = False
    for pattern in patterns:
        hits = cv2.morphologyEx(binary, cv2.MORPH_HITMISS, pattern) > 127
        if hits.any():
            binary[hits] = 0
            changed = True
    return changed


def thin(binary: Map, *, prune: bool) -> Map:
    """A 0/255 map thinned to one-pixel lines (at most 32 rounds), then, with `prune`, one round of spur pruning."""
    thinned = binary.copy()
    for _ in range(32):
        if not _peel(thinned, THINNING):
            break
    if prune:
        _peel(thinned, PRUNING)
    return thinned
