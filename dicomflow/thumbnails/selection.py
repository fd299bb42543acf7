"""Pick the instance and frame a thumbnail shows: the middle of the series."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dicomflow.dicom.instance import Instance

__all__ = ["middle_frame", "sort_instances"]


def _normal(orientation: Sequence[float]) -> np.ndarray:
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    return np.cross(row, column)


def sort_instances(instances: Sequence[Instance]) -> list[Instance]:
    """Order instances along the slice normal, else by Instance Number, else by path.

    Position wins when every instance has one and all share an orientation, since
    Instance Number follows acquisition order, which need not be spatial order
    (interleaved or reversed acquisitions).
    """
    orientations = {i.image_orientation for i in instances}
    orientation = next(iter(orientations)) if len(orientations) == 1 else None
    if len(instances) > 1 and orientation is not None:
        normal = _normal(orientation)
        placed = [
            (float(np.dot(normal, i.image_position)), str(i.path), i)
            for i in instances
            if i.image_position is not None
        ]
        if len(placed) == len(instances):
            return [i for _, _, i in sorted(placed, key=lambda item: item[:2])]
    return sorted(instances, key=Instance.sort_key)


def middle_frame(instances: Sequence[Instance]) -> tuple[Instance, int]:
    """Return the middle instance of the sorted series and its middle frame (0-based).

    Raises
    ------
    ValueError
        When no instance has pixel data (``number_of_frames == 0``).
    """
    images = [i for i in instances if i.frames > 0]
    if not images:
        raise ValueError("no instance with pixel data")
    ordered = sort_instances(images)
    chosen = ordered[(len(ordered) - 1) // 2]
    return chosen, (chosen.frames - 1) // 2
