"""Display colours for segments, ROIs and label values that come without one.

One sequence serves every place that picks such a colour: the NIfTI import writes
colour ``i`` as the recommended display colour of the ``i``-th label of a map, and
the SEG/RTSTRUCT thumbnails fall back to colour ``n - 1`` for segment ``n`` (or the
``n``-th ROI) that recommends none. A segment thus looks the same whether its object
carries the colour or not.

Kept free of imaging libraries so that both the import and the thumbnail workers can
use it without loading the other's dependencies.
"""

from __future__ import annotations

import colorsys

__all__ = ["DISTINCT_COLOURS", "distinct_rgb"]

#: Colours far apart for the first labels (a published list of distinct colours,
#: without its light pastels, which vanish over a bright image).
DISTINCT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (128, 128, 0),
    (0, 0, 128),
)

# Beyond the list, hues a golden angle apart: every new colour falls into the widest
# gap left by the earlier ones, so no two labels of a large map share a colour.
_GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def distinct_rgb(index: int) -> tuple[int, int, int]:
    """RGB colour number ``index`` of a sequence of distinct colours.

    Parameters
    ----------
    index : int
        0-based position in the sequence (the ``index``-th label, segment or ROI).
        A negative one (from a segment numbered 0 or less in a broken file) gets a
        generated colour rather than an error: a thumbnail must not fail on it.

    Returns
    -------
    tuple of int
        ``(red, green, blue)``, each 0-255. The first ones come from
        :data:`DISTINCT_COLOURS`, later ones are generated, so every index has its
        own colour.
    """
    if 0 <= index < len(DISTINCT_COLOURS):
        return DISTINCT_COLOURS[index]
    hue = (index * _GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)
