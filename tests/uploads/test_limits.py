"""Upload limits as users read them: in the unit the setting uses, never a rounded decimal."""

from __future__ import annotations

import pytest

from dicomflow.uploads.limits import (
    UploadLimit,
    UploadLimitError,
    UploadLimits,
    format_bytes,
    format_bytes_like,
)

GIB = 1 << 30


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (100 * GIB, "100 GiB"),  # the default uploads.max_file_bytes, not "107.4 GB"
        (500 * GIB, "500 GiB"),
        (1 << 40, "1 TiB"),
        (3 << 20, "3 MiB"),
        (1536 << 10, "1536 KiB"),  # 1.5 MiB: exact in KiB rather than rounded
        (64 << 10, "64 KiB"),
        (100 * GIB + 1, "107374182401 bytes"),
        (1000, "1000 bytes"),
        (1, "1 byte"),
        (0, "0 bytes"),
    ],
)
def test_a_size_is_shown_in_the_largest_binary_unit_it_is_a_multiple_of(
    size: int, shown: str
) -> None:
    assert format_bytes(size) == shown


def test_a_size_next_to_a_limit_reads_in_the_limits_unit_too() -> None:
    assert format_bytes_like(120 * GIB + 1, 100 * GIB) == "128849018881 bytes (about 120.0 GiB)"
    assert format_bytes_like(120 * GIB, 100 * GIB) == "120 GiB"
    assert format_bytes_like(2000, 1000) == "2000 bytes"


def test_refusals_name_the_limit_in_its_unit() -> None:
    limits = UploadLimits(max_file_bytes=100 * GIB, max_upload_bytes=500 * GIB, max_files=6)
    with pytest.raises(UploadLimitError) as big_file:
        limits.check_file("scan.zip", 120 * GIB + 1)
    assert str(big_file.value) == (
        "file 'scan.zip' size: 128849018881 bytes (about 120.0 GiB) is more than the "
        "configured limit uploads.max_file_bytes = 100 GiB"
    )
    with pytest.raises(UploadLimitError) as big_upload:
        limits.check_upload([("a", 100 * GIB), ("b", 100 * GIB), ("c", 80 * GIB)] * 2)
    assert str(big_upload.value).endswith("uploads.max_upload_bytes = 500 GiB")
    assert "total size: 560 GiB is more" in str(big_upload.value)
    with pytest.raises(UploadLimitError) as many:
        limits.check_upload([(f"f{i}", 1) for i in range(7)])
    assert str(many.value) == (
        "number of files: 7 is more than the configured limit uploads.max_files = 6"
    )
    assert limits.labels() == {
        "max_file_bytes": "100 GiB",
        "max_upload_bytes": "500 GiB",
        "max_files": "6",
    }
    assert UploadLimit.MAX_FILES.show(100_000) == "100000"
