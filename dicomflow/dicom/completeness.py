"""Completeness of a series judged by its Instance Numbers."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable

__all__ = ["MAX_REPORTED_GAPS", "duplicate_instance_numbers", "missing_instance_numbers"]

#: A series numbered 1 and 1,000,000 would otherwise produce a million-entry list.
MAX_REPORTED_GAPS = 1000


def missing_instance_numbers(
    numbers: Iterable[int | None], *, limit: int = MAX_REPORTED_GAPS
) -> list[int]:
    """Return the Instance Numbers missing between the lowest and the highest present.

    Parameters
    ----------
    numbers
        The Instance Numbers of the instances; ``None`` (absent) is ignored.
    limit
        Report at most this many missing numbers (the lowest ones).

    Returns
    -------
    list of int
        Sorted gaps, e.g. ``[3, 4]`` for ``[1, 2, 5]``. Empty when fewer than two numbers
        are known: a gap before the lowest number cannot be told from a series that
        simply starts there.
    """
    present = sorted({n for n in numbers if n is not None})
    missing: list[int] = []
    for low, high in itertools.pairwise(present):
        for n in range(low + 1, high):
            if len(missing) >= limit:
                return missing
            missing.append(n)
    return missing


def duplicate_instance_numbers(numbers: Iterable[int | None]) -> list[int]:
    """Return the Instance Numbers used by more than one instance, sorted."""
    counts = Counter(n for n in numbers if n is not None)
    return sorted(n for n, count in counts.items() if count > 1)
