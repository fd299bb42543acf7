"""Thumbnails rendered from real DICOM files and checked by their pixels."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomflow.dicom.headers import group_series
from dicomflow.dicom.instance import Instance
from dicomflow.thumbnails import ThumbnailKind, render_series_thumbnail
from dicomflow.thumbnails.imaging import VOILUTFunction, Window
from dicomflow.thumbnails.selection import middle_frame, sort_instances
from tests.thumbnails.thumbnail_testutil import (
    coloured,
    png_array,
    pydicom_file,
    write_ct_series,
)

#: A rendered slice with anatomy in it is far from uniform.
MIN_STD = 20.0


def render(name: str) -> tuple[np.ndarray, object]:
    result = render_series_thumbnail([pydicom_file(name)])
    assert result.png is not None, result.reason
    return png_array(result.png), result


def test_middle_slice_of_a_shuffled_series(tmp_path: Path) -> None:
    ct = write_ct_series(tmp_path / "ct", 5)
    files = [Path(ds.filename) for ds in ct]
    random.Random(4).shuffle(files)
    result = render_series_thumbnail(files)
    assert result.kind is ThumbnailKind.IMAGE
    assert result.sop_instance_uid == ct[2].SOPInstanceUID and result.frame == 0
    pixels = png_array(result.png)
    assert pixels.shape == (128, 128, 3) and result.size == (128, 128)
    assert pixels.std() > MIN_STD
    # The same result from a SeriesGroup (headers already read by the grouping).
    grouped = render_series_thumbnail(group_series(files).series[0])
    assert grouped.png == result.png


def test_order_follows_position_before_instance_number(tmp_path: Path) -> None:
    orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

    def instance(n: int) -> Instance:
        return Instance(tmp_path / f"{n}", f"1.2.{n}", "1.3", "1.4", "1.2", instance_number=n)

    instances = [
        replace(instance(n), image_position=(0.0, 0.0, -float(n)), image_orientation=orientation)
        for n in range(1, 5)
    ]
    assert [i.instance_number for i in sort_instances(instances)] == [4, 3, 2, 1]
    assert middle_frame(instances)[0].instance_number == 3
    no_geometry = [instance(n) for n in (3, 1, 2, 4)]
    assert [i.instance_number for i in sort_instances(no_geometry)] == [1, 2, 3, 4]


def test_large_compressed_image_is_shrunk_to_300() -> None:
    pixels, result = render("693_J2KR.dcm")  # 512x512 JPEG 2000 CT
    assert pixels.shape == (300, 300, 3)
    assert pixels.std() > MIN_STD
    assert "window" in result.reason  # type: ignore[attr-defined]


def test_wide_image_keeps_its_aspect_ratio() -> None:
    pixels, _ = render("US1_J2KR.dcm")  # 640x480 JPEG 2000 colour ultrasound
    assert pixels.shape == (225, 300, 3)
    assert coloured(pixels, 30).mean() > 0.01


def test_monochrome1_is_the_inverse_of_monochrome2(tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    m2, m1 = tmp_path / "m2.dcm", tmp_path / "m1.dcm"
    ds.save_as(m2)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(m1)
    a2 = png_array(render_series_thumbnail([m2]).png).astype(int)
    result = render_series_thumbnail([m1])
    a1 = png_array(result.png).astype(int)
    assert a2.std() > MIN_STD
    assert np.abs(a1 + a2 - 255).max() <= 1
    assert "inverted" in result.reason


def test_real_monochrome1_radiograph_is_inverted() -> None:
    pixels, result = render("RG1_UNCI.dcm")  # CR, MONOCHROME1, 1955x1841
    assert max(pixels.shape[:2]) == 300
    assert pixels.std() > MIN_STD
    assert "inverted" in result.reason  # type: ignore[attr-defined]


def test_rgb_colour_is_kept_and_ybr_is_converted() -> None:
    rgb, _ = render("SC_rgb.dcm")
    assert coloured(rgb).mean() > 0.5  # colour bars: most pixels far from gray
    ybr, _ = render("SC_ybr_full_uncompressed.dcm")  # the same picture stored as YBR_FULL
    assert np.abs(rgb.astype(int) - ybr.astype(int)).mean() < 3
    deep, _ = render("SC_rgb_16bit.dcm")
    assert np.abs(rgb.astype(int) - deep.astype(int)).max() <= 1


def test_palette_colour_is_applied() -> None:
    pixels, result = render("OBXXXX1A.dcm")
    assert result.reason == "palette colour"  # type: ignore[attr-defined]
    assert coloured(pixels, 30).mean() > 0.01


@pytest.mark.parametrize(
    ("compressed", "plain"),
    [("MR_small_RLE.dcm", "MR_small.dcm"), ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm")],
)
def test_lossless_compressed_renders_like_uncompressed(compressed: str, plain: str) -> None:
    a, ra = render(compressed)
    b, rb = render(plain)
    assert a.std() > MIN_STD
    assert np.array_equal(a, b)
    assert ra.frame == rb.frame  # type: ignore[attr-defined]


def test_multi_frame_uses_the_middle_frame() -> None:
    _, result = render("emri_small.dcm")  # 10 frames
    assert result.frame == 4  # type: ignore[attr-defined]
    pixels, result = render("color3d_jpeg_baseline.dcm")  # 120 frames, JPEG YBR_FULL_422
    assert result.frame == 59  # type: ignore[attr-defined]
    assert pixels.shape == (225, 300, 3) and pixels.std() > 10


def test_header_window_wins_over_percentiles() -> None:
    assert render("MR_small.dcm")[1].reason == "window 600/1600"  # type: ignore[attr-defined]
    assert render("CT_small.dcm")[1].reason == "percentile window 1-99"  # type: ignore[attr-defined]


def test_window_functions() -> None:
    values = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    linear = Window(40, 400).apply(values)
    assert linear.tolist()[0] == 0 and linear.tolist()[-1] == 255
    assert 126 <= linear[2] <= 129
    exact = Window(40, 400, VOILUTFunction.LINEAR_EXACT).apply(values)
    assert exact.tolist() == [0, 0, 128, 255, 255]
    sigmoid = Window(40, 400, VOILUTFunction.SIGMOID).apply(values)
    assert sigmoid[2] == 128 and sigmoid[0] < 5 and sigmoid[-1] > 250


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("reportsi.dcm", "Basic Text SR Storage has no pixel data"),
        ("rtplan.dcm", "RT Plan Storage has no pixel data"),
        ("waveform_ecg.dcm", "12-lead ECG Waveform Storage has no pixel data"),
    ],
)
def test_series_without_pixels_get_a_reason(name: str, why: str) -> None:
    result = render_series_thumbnail([pydicom_file(name)])
    assert result.png is None and result.kind is ThumbnailKind.NONE
    assert result.reason == f"no thumbnail: {why}"


def test_undecodable_pixels_get_a_reason_not_an_exception(tmp_path: Path) -> None:
    result = render_series_thumbnail([pydicom_file("MR_truncated.dcm")])
    assert result.png is None
    assert result.reason.startswith("no thumbnail: pixel data could not be decoded")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 300)
    assert render_series_thumbnail([junk]).reason == "no thumbnail: no readable DICOM instance"
