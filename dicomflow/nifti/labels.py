"""What the values of a label map mean: names, codes, colours, algorithm.

Read from ``seg_info.json`` (basic layout) or from the ``labels`` of an nnU-Net
``dataset.json``. Well-known structure names get SNOMED CT codes; anything
else gets a generic but valid coding and keeps its name as the segment label.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from dicomflow.dicom.colours import distinct_rgb
from dicomflow.nifti.errors import MalformedJsonError, SegInfoError
from dicomflow.nifti.jsonfiles import JsonDocument, read_json_object

__all__ = [
    "GROUND_TRUTH",
    "LabelDescription",
    "SegInfo",
    "code_for_label",
    "load_seg_info",
    "seg_info_from_nnunet",
]

#: ``algorithm`` value meaning a manual (reference) segmentation.
GROUND_TRUTH = "ground truth"

_ANATOMY = codes.SCT.AnatomicalStructure
_ABNORMAL = codes.SCT.MorphologicallyAbnormalStructure
_TISSUE = codes.SCT.Tissue

# Names seen in public datasets (Medical Segmentation Decathlon, TotalSegmentator,
# BraTS, PI-CAI), normalised as by _normalise().
_KNOWN: dict[str, tuple[Code, Code]] = {
    "prostate": (_ANATOMY, codes.SCT.Prostate),
    "peripheral zone": (_ANATOMY, codes.SCT.PeripheralZoneOfTheProstate),
    "pz": (_ANATOMY, codes.SCT.PeripheralZoneOfTheProstate),
    "transition zone": (_ANATOMY, codes.SCT.TransitionZoneOfTheProstate),
    "tz": (_ANATOMY, codes.SCT.TransitionZoneOfTheProstate),
    "liver": (_ANATOMY, codes.SCT.Liver),
    "kidney": (_ANATOMY, codes.SCT.Kidney),
    "spleen": (_ANATOMY, codes.SCT.Spleen),
    "pancreas": (_ANATOMY, codes.SCT.Pancreas),
    "lung": (_ANATOMY, codes.SCT.Lung),
    "heart": (_ANATOMY, codes.SCT.Heart),
    "left ventricle": (_ANATOMY, codes.SCT.LeftVentricle),
    "right ventricle": (_ANATOMY, codes.SCT.RightVentricle),
    "brain": (_ANATOMY, codes.SCT.Brain),
    "hippocampus": (_ANATOMY, codes.SCT.Hippocampus),
    "bladder": (_ANATOMY, codes.SCT.Bladder),
    "urinary bladder": (_ANATOMY, codes.SCT.Bladder),
    "aorta": (_ANATOMY, codes.SCT.Aorta),
    "gallbladder": (_ANATOMY, codes.SCT.Gallbladder),
    "stomach": (_ANATOMY, codes.SCT.Stomach),
    "esophagus": (_ANATOMY, codes.SCT.Esophagus),
    "colon": (_ANATOMY, codes.SCT.Colon),
    "duodenum": (_ANATOMY, codes.SCT.Duodenum),
    "small intestine": (_ANATOMY, codes.SCT.SmallIntestine),
    "rectum": (_ANATOMY, codes.SCT.Rectum),
    "trachea": (_ANATOMY, codes.SCT.Trachea),
    "bone": (_ANATOMY, codes.SCT.Bone),
    "vertebra": (_ANATOMY, codes.SCT.Vertebra),
    "spinal cord": (_ANATOMY, codes.SCT.SpinalCord),
    "femur": (_ANATOMY, codes.SCT.Femur),
    "sacrum": (_ANATOMY, codes.SCT.Sacrum),
    "uterus": (_ANATOMY, codes.SCT.Uterus),
    "thyroid": (_ANATOMY, codes.SCT.Thyroid),
    "adrenal gland": (_ANATOMY, codes.SCT.AdrenalGland),
    "portal vein": (_ANATOMY, codes.SCT.PortalVein),
    "inferior vena cava": (_ANATOMY, codes.SCT.InferiorVenaCava),
    "lymph node": (_ANATOMY, codes.SCT.LymphNode),
    "muscle": (_TISSUE, codes.SCT.Muscle),
    "fat": (_TISSUE, codes.SCT.AdiposeTissue),
    "tumor": (_ABNORMAL, codes.SCT.Neoplasm),
    "tumour": (_ABNORMAL, codes.SCT.Neoplasm),
    "neoplasm": (_ABNORMAL, codes.SCT.Neoplasm),
    "cancer": (_ABNORMAL, codes.SCT.Neoplasm),
    "lesion": (_ABNORMAL, codes.SCT.Lesion),
    "cyst": (_ABNORMAL, codes.SCT.Cyst),
    "nodule": (_ABNORMAL, codes.SCT.Nodule),
    "mass": (_ABNORMAL, codes.SCT.Mass),
    "edema": (_ABNORMAL, codes.SCT.Edema),
    "oedema": (_ABNORMAL, codes.SCT.Edema),
    "necrosis": (_ABNORMAL, codes.SCT.Necrosis),
}


def _normalise(name: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", name)).strip().lower()


def code_for_label(name: str) -> tuple[Code, Code] | None:
    """Segmented property category and type for a well-known structure name.

    Parameters
    ----------
    name : str
        Label name (case, ``_``/``-`` and spacing do not matter; a leading
        ``left``/``right`` is ignored).

    Returns
    -------
    tuple of pydicom.sr.coding.Code or None
        ``(category, type)``, or ``None`` for names not in the table.
    """
    key = _normalise(name)
    if key in _KNOWN:
        return _KNOWN[key]
    side = re.match(r"^(left|right) (.+)$", key)
    if side and side.group(2) in _KNOWN:
        return _KNOWN[side.group(2)]
    if key.endswith("s") and key[:-1] in _KNOWN:
        return _KNOWN[key[:-1]]
    return None


@dataclass(frozen=True)
class LabelDescription:
    """Meaning of one label value.

    Attributes
    ----------
    value : int
        Value in the label map (> 0).
    name : str
        Human-readable name; becomes the Segment Label.
    category, property_type : pydicom.sr.coding.Code
        Segmented Property Category and Type.
    rgb : tuple of int
        Display colour (written as CIELab).
    coded : bool
        Whether the name was recognised (``False``: generic "Tissue" coding).
    """

    value: int
    name: str
    category: Code
    property_type: Code
    rgb: tuple[int, int, int]
    coded: bool

    @classmethod
    def make(cls, value: int, name: str, index: int) -> LabelDescription:
        """Describe label ``value`` called ``name``, the ``index``-th of its map."""
        known = code_for_label(name)
        category, property_type = known if known is not None else (_TISSUE, _TISSUE)
        return cls(value, name, category, property_type, distinct_rgb(index), known is not None)


@dataclass(frozen=True)
class SegInfo:
    """Label description of the segmentations of an import.

    Attributes
    ----------
    labels : tuple of LabelDescription
        Labels ordered by value (background excluded).
    algorithm : str or None
        Algorithm that produced the label maps; ``None`` for manual ground truth.
    algorithm_version : str
        Its version (``"unknown"`` when not given).
    body_part : str or None
        ``task_body_part``, if given.
    path : pathlib.Path or None
        File the description was read from.
    """

    labels: tuple[LabelDescription, ...]
    algorithm: str | None
    algorithm_version: str = "unknown"
    body_part: str | None = None
    path: Path | None = None

    @property
    def manual(self) -> bool:
        """Whether the segmentations are manual (ground truth)."""
        return self.algorithm is None

    def by_value(self) -> dict[int, LabelDescription]:
        """Labels keyed by their value."""
        return {label.value: label for label in self.labels}


def _label_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"label value must be an integer, got {raw!r}")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    else:
        raise ValueError(f"label value must be a non-negative integer, got {raw!r}")
    if value < 0:
        raise ValueError(f"label value must be a non-negative integer, got {raw!r}")
    return value


def _build(
    pairs: list[tuple[int, str, int | None]], doc: JsonDocument, key: str
) -> tuple[LabelDescription, ...]:
    seen: dict[int, str] = {}
    for value, name, line in pairs:
        if value in seen:
            raise SegInfoError(
                f"label value {value} is listed twice ({seen[value]!r} and {name!r})",
                path=doc.path,
                key=key,
                line=line,
            )
        seen[value] = name
    ordered = sorted((v, n) for v, n in seen.items() if v != 0)
    if not ordered:
        raise SegInfoError("no label other than background (0) is listed", path=doc.path, key=key)
    return tuple(LabelDescription.make(v, n, i) for i, (v, n) in enumerate(ordered))


def load_seg_info(path: Path) -> SegInfo:
    """Read ``seg_info.json``.

    ``{"algorithm": "Ground truth" | "<model>", "task_body_part": "...",
    "seg_info": [{"label_name": "prostate", "label_int": "1"}, ...]}``;
    an optional ``"algorithm_version"`` is used for automatic segmentations.

    Raises
    ------
    MissingFileError, MalformedJsonError
        If the file is missing or not JSON.
    SegInfoError
        If the labels are missing, malformed or listed twice.
    """
    doc = read_json_object(path)
    entries = doc.data.get("seg_info")
    if not isinstance(entries, list):
        raise SegInfoError(
            '\'seg_info\' must be a list of {"label_name", "label_int"} objects',
            path=path,
            key="seg_info",
            line=doc.line_of("seg_info"),
        )
    pairs: list[tuple[int, str, int | None]] = []
    for number, entry in enumerate(entries):
        line = doc.line_of("seg_info")
        if not isinstance(entry, dict) or "label_name" not in entry or "label_int" not in entry:
            raise SegInfoError(
                f"entry {number} of 'seg_info' needs 'label_name' and 'label_int', got {entry!r}",
                path=path,
                key="seg_info",
                line=line,
            )
        name = entry["label_name"]
        if not isinstance(name, str) or not name.strip():
            raise SegInfoError(
                f"entry {number}: 'label_name' must be a non-empty string, got {name!r}",
                path=path,
                key="label_name",
                line=line,
            )
        try:
            value = _label_int(entry["label_int"])
        except ValueError as exc:
            raise SegInfoError(
                f"entry {number} ({name!r}): {exc}",
                path=path,
                key="label_int",
                line=doc.line_of("seg_info", name),
            ) from None
        pairs.append((value, name.strip(), doc.line_of("seg_info", name)))
    algorithm = doc.data.get("algorithm", "Ground truth")
    if not isinstance(algorithm, str) or not algorithm.strip():
        raise SegInfoError(
            "'algorithm' must be \"Ground truth\" or the name of a model",
            path=path,
            key="algorithm",
            line=doc.line_of("algorithm"),
        )
    version = doc.data.get("algorithm_version", "unknown")
    body_part = doc.data.get("task_body_part")
    for key, value_ in (("algorithm_version", version), ("task_body_part", body_part)):
        if value_ is not None and not isinstance(value_, str):
            raise MalformedJsonError(
                f"'{key}' must be a string", path=path, key=key, line=doc.line_of(key)
            )
    manual = algorithm.strip().lower() == GROUND_TRUTH
    return SegInfo(
        labels=_build(pairs, doc, "seg_info"),
        algorithm=None if manual else algorithm.strip(),
        algorithm_version=str(version) or "unknown",
        body_part=body_part or None,
        path=path,
    )


def seg_info_from_nnunet(labels: Mapping[str, Any], doc: JsonDocument) -> SegInfo:
    """Label description from the ``labels`` of an nnU-Net v2 ``dataset.json``.

    nnU-Net label maps of ``labelsTr`` are reference annotations, so the result
    is a manual segmentation.

    Raises
    ------
    SegInfoError
        For region-based (list-valued) labels, non-integer values or duplicates.
    """
    pairs: list[tuple[int, str, int | None]] = []
    for name, raw in labels.items():
        line = doc.line_of("labels", name)
        if isinstance(raw, list):
            raise SegInfoError(
                "region-based labels (a list of values) are not supported",
                path=doc.path,
                key=name,
                line=line,
            )
        try:
            value = _label_int(raw)
        except ValueError as exc:
            raise SegInfoError(str(exc), path=doc.path, key=name, line=line) from None
        pairs.append((value, name, line))
    return SegInfo(labels=_build(pairs, doc, "labels"), algorithm=None, path=doc.path)
