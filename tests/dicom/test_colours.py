"""The one sequence of display colours for labels, segments and ROIs."""

from __future__ import annotations

from dicomflow.dicom.colours import DISTINCT_COLOURS, distinct_rgb


def test_every_index_has_its_own_colour() -> None:
    colours = {distinct_rgb(i) for i in range(40)}
    assert len(colours) == 40
    assert all(0 <= channel <= 255 for colour in colours for channel in colour)


def test_the_listed_colours_come_first_then_generated_ones() -> None:
    assert [distinct_rgb(i) for i in range(len(DISTINCT_COLOURS))] == list(DISTINCT_COLOURS)
    assert distinct_rgb(len(DISTINCT_COLOURS)) not in DISTINCT_COLOURS


def test_a_negative_index_gets_a_colour_rather_than_an_error() -> None:
    # Segment number 0 in a broken SEG asks for index -1; a thumbnail must still draw.
    assert len(distinct_rgb(-1)) == 3
    assert len(distinct_rgb(-100)) == 3
