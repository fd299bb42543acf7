"""SEG and RTSTRUCT thumbnails: overlays on the referenced image, or placeholders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dicomflow.dicom.colours import distinct_rgb
from dicomflow.thumbnails import ThumbnailKind, render_series_thumbnail
from dicomflow.thumbnails.overlays import cielab_to_rgb
from tests.thumbnails.thumbnail_testutil import (
    coloured,
    patient_point,
    png_array,
    pydicom_file,
    write_ct_series,
    write_rtstruct,
    write_seg,
)


@pytest.mark.parametrize(("name", "label"), [("liver.dcm", "SEG"), ("rtstruct.dcm", "RTSTRUCT")])
def test_placeholder_without_reference_series(name: str, label: str) -> None:
    result = render_series_thumbnail([pydicom_file(name)])
    assert result.kind is ThumbnailKind.PLACEHOLDER
    assert result.reason == f"{label} — reference series not available"
    pixels = png_array(result.png)
    assert max(pixels.shape[:2]) <= 300
    # Text was drawn: light glyph pixels on the dark background.
    assert (pixels.min(axis=2) > 200).sum() > 100


def test_seg_segments_are_drawn_in_distinct_colours_on_the_fullest_slice(tmp_path: Path) -> None:
    ct = write_ct_series(tmp_path / "ct", 5)
    labels = np.zeros((5, 128, 128), dtype=np.uint8)
    labels[1, 10:15, 10:15] = 1  # a small piece elsewhere
    labels[3, 20:60, 20:60] = 1
    labels[3, 80:100, 80:100] = 2
    seg = write_seg(tmp_path / "seg.dcm", ct, labels)

    result = render_series_thumbnail([seg], referenced_files=[Path(ds.filename) for ds in ct])

    assert result.kind is ThumbnailKind.OVERLAY, result.reason
    assert result.sop_instance_uid == ct[3].SOPInstanceUID
    pixels = png_array(result.png)
    assert pixels.shape == (128, 128, 3)
    mask = coloured(pixels, 20)
    expected = labels[3] > 0
    assert mask[expected].mean() > 0.95  # segments are coloured ...
    assert mask[~expected].mean() < 0.01  # ... and nothing else is
    first = pixels[22:58, 22:58].reshape(-1, 3).mean(axis=0)
    second = pixels[82:98, 82:98].reshape(-1, 3).mean(axis=0)
    assert np.abs(first - second).max() > 40


def test_segments_without_recommended_colour_get_the_label_map_colours(tmp_path: Path) -> None:
    # The fallback is the sequence the NIfTI import gives the labels of a map, so
    # segment n looks the same whether its SEG recommends a colour or not.
    ct = write_ct_series(tmp_path / "ct", 1)
    labels = np.zeros((1, 128, 128), dtype=np.uint8)
    labels[0, 20:60, 20:60] = 1
    labels[0, 80:100, 80:100] = 2
    labels[0, 10:15, 100:120] = 3
    seg = write_seg(tmp_path / "seg.dcm", ct, labels)

    result = render_series_thumbnail([seg], referenced_files=[Path(ds.filename) for ds in ct])

    assert result.kind is ThumbnailKind.OVERLAY, result.reason
    pixels = png_array(result.png)
    # Segment outlines are drawn in the full colour (the inside is blended).
    for number, (row, column) in enumerate([(20, 20), (80, 80), (10, 100)], start=1):
        assert tuple(int(c) for c in pixels[row, column]) == distinct_rgb(number - 1)


def test_seg_with_unrelated_reference_series_has_no_thumbnail(tmp_path: Path) -> None:
    ct = write_ct_series(tmp_path / "ct", 2)
    result = render_series_thumbnail(
        [pydicom_file("liver.dcm")], referenced_files=[Path(ds.filename) for ds in ct]
    )
    assert result.png is None
    assert result.reason == "no thumbnail: SEG frames match none of the referenced images"


def test_rtstruct_contours_are_projected_onto_the_referenced_slice(tmp_path: Path) -> None:
    ct = write_ct_series(tmp_path / "ct", 5)
    # Red: a rectangle on slice 2 found through its plane (no Contour Image Sequence).
    red = [patient_point(r, c, 2) for r, c in ((70, 20), (70, 60), (110, 60), (110, 20))]
    # Green: a small square on slice 2 named by SOP Instance UID.
    green = [patient_point(r, c, 2) for r, c in ((10, 100), (10, 120), (20, 120), (20, 100))]
    # Blue-ish distractor on slice 4 with fewer points.
    other = [patient_point(r, c, 4) for r, c in ((5, 5), (5, 9), (9, 9))]
    rt = write_rtstruct(
        tmp_path / "rt.dcm",
        ct,
        [(red, None), (green, ct[2].SOPInstanceUID), (other, ct[4].SOPInstanceUID)],
    )

    result = render_series_thumbnail([rt], referenced_files=[Path(ds.filename) for ds in ct])

    assert result.kind is ThumbnailKind.OVERLAY, result.reason
    assert result.sop_instance_uid == ct[2].SOPInstanceUID
    pixels = png_array(result.png).astype(int)
    is_red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    is_green = (pixels[..., 1] > 200) & (pixels[..., 0] < 60) & (pixels[..., 2] < 60)
    # Edges where the geometry puts them (x = column + 0.5, y = row + 0.5) ...
    assert is_red[85:95, 19:23].any(axis=1).all()  # left edge, column 20
    assert is_red[85:95, 59:63].any(axis=1).all()  # right edge, column 60
    assert is_red[69:73, 30:50].any(axis=0).all()  # top edge, row 70
    assert is_green[9:13, 105:115].any(axis=0).all()
    # ... and nowhere else: inside the rectangle, and where swapped spacing would put it.
    assert not is_red[80:100, 28:52].any()
    assert not is_red[:60].any() and not is_red[120:].any()


def test_rtstruct_without_matching_slice_has_no_thumbnail(tmp_path: Path) -> None:
    ct = write_ct_series(tmp_path / "ct", 3)
    far = [patient_point(r, c, 40) for r, c in ((10, 10), (10, 20), (20, 20))]
    rt = write_rtstruct(tmp_path / "rt.dcm", ct, [(far, None)])
    result = render_series_thumbnail([rt], referenced_files=[Path(ds.filename) for ds in ct])
    assert result.png is None
    assert result.reason == "no thumbnail: RTSTRUCT contours lie on none of the referenced images"


def test_cielab_conversion_of_known_colours() -> None:
    assert cielab_to_rgb([65535, 32896, 32896]) == (255, 255, 255)
    assert cielab_to_rgb([0, 32896, 32896]) == (0, 0, 0)
    red = cielab_to_rgb(
        [
            int(53.24 / 100 * 65535),
            int((80.09 + 128) / 255 * 65535),
            int((67.20 + 128) / 255 * 65535),
        ]
    )
    assert red[0] > 245 and red[1] < 15 and red[2] < 15
