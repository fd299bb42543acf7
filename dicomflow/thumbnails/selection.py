"""Pick the instance and frame a thumbnail shows: the middle of the series."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dicomflow.dicom.headers import InstanceInfo

__all__ = ["middle_frame", "sort_instances"]


def _normal(orientation: Sequence[float]) -> np.ndarray:
    row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    return np.cross(row, column)


def sort_instances(instances: Sequence[InstanceInfo]) -> list[InstanceInfo]:
    """Order instances along the slice normal, else by Instance Number, else by path.

    Position wins when every instance has one and all share an orientation, since
    Instance Number follows acquisition order, which need not be spatial order
    (interleaved or reversed acquisitions).
    """
    orientations = {i.image_orientation for i in instances}
    if (
        len(instances) > 1
        and len(orientations) == 1
        and None not in orientations
        and all(i.image_position is not None for i in instances)
    ):
        normal = _normal(next(iter(orientations)))  # type: ignore[arg-type]
        return sorted(
            instances,
            key=lambda i: (float(np.dot(normal, i.image_position)), str(i.path)),  # type: ignore[arg-type]
        )
    return sorted(
        instances,
        key=lambda i: (i.instance_number is None, i.instance_number or 0, str(i.path)),
    )


def middle_frame(instances: Sequence[InstanceInfo]) -> tuple[InstanceInfo, int]:
    """Return the middle instance of the sorted series and its middle frame (0-based).

    Raises
    ------
    ValueError
        When no instance has pixel data (``number_of_frames == 0``).
    """
    images = [i for i in instances if i.number_of_frames > 0]
    if not images:
        raise ValueError("no instance with pixel data")
    ordered = sort_instances(images)
    chosen = ordered[(len(ordered) - 1) // 2]
    return chosen, (chosen.number_of_frames - 1) // 2
