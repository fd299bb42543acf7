"""Finding the cases of an import folder (basic layout or nnU-Net v2)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dicomflow.nifti.enums import Layout, Modality
from dicomflow.nifti.errors import (
    LayoutError,
    MalformedJsonError,
    MissingFileError,
    NiftiImportError,
)
from dicomflow.nifti.jsonfiles import read_json_object
from dicomflow.nifti.labels import SegInfo, load_seg_info, seg_info_from_nnunet
from dicomflow.nifti.options import NiftiImportOptions
from dicomflow.nifti.tags import MetaData, load_meta_data
from dicomflow.nifti.volume import nifti_stem

__all__ = [
    "CaseSpec",
    "ChannelFile",
    "ImportPlan",
    "detect_layout",
    "modality_for_channel",
    "plan_import",
]

META_DATA = "meta_data.json"
SEG_INFO = "seg_info.json"
DATASET_JSON = "dataset.json"

# Channel names that mean MR, as used in nnU-Net/MSD dataset.json files.
_MR_CHANNEL = re.compile(
    r"^(mri?|t1\w*|t2\w*|adc|flair|dwi|pd|swi|dce|hbv|b\d+|perfusion|bold)$", re.IGNORECASE
)


@dataclass(frozen=True)
class ChannelFile:
    """One image file of a case (one nnU-Net channel, or the basic layout's image).

    Attributes
    ----------
    index : int
        Channel index (0 for the basic layout).
    name : str
        Channel name (``"image"`` for the basic layout).
    path : pathlib.Path
        The NIfTI file.
    modality : Modality or None
        Modality implied by the channel name, if any.
    """

    index: int
    name: str
    path: Path
    modality: Modality | None = None


@dataclass(frozen=True)
class CaseSpec:
    """The files of one case.

    Attributes
    ----------
    case_id : str
        Case name (file name without extension, or nnU-Net case identifier).
    images : tuple of ChannelFile
        Image files ordered by channel.
    labelmap : pathlib.Path or None
        Label map of channel 0, if any.
    split : str
        ``""`` (basic), ``"imagesTr"`` or ``"imagesTs"``.
    problem : NiftiImportError or None
        Why the case cannot be converted, when found while discovering it.
    """

    case_id: str
    images: tuple[ChannelFile, ...]
    labelmap: Path | None = None
    split: str = ""
    problem: NiftiImportError | None = None


@dataclass
class ImportPlan:
    """Everything found in an import folder before converting anything.

    Attributes
    ----------
    layout : Layout
        Detected layout.
    root : pathlib.Path
        The folder (or the single file).
    cases : list of CaseSpec
        Cases in name order.
    meta : MetaData
        ``meta_data.json`` contents (empty when absent).
    seg_info : SegInfo or None
        Label description for the label maps.
    warnings : list of str
        Files ignored and other things a user should know.
    """

    layout: Layout
    root: Path
    cases: list[CaseSpec]
    meta: MetaData
    seg_info: SegInfo | None
    warnings: list[str] = field(default_factory=list)


def _is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz"))


def detect_layout(path: Path) -> Layout:
    """Tell which layout ``path`` has.

    Parameters
    ----------
    path : pathlib.Path
        Import folder, or a single ``.nii``/``.nii.gz`` file.

    Returns
    -------
    Layout
        NNUNET when the folder has ``dataset.json`` or ``imagesTr/``, BASIC when
        it has NIfTI files at its top level, SINGLE_FILE for a NIfTI file.

    Raises
    ------
    LayoutError
        If ``path`` does not exist or holds nothing convertible.
    """
    if _is_nifti(path):
        return Layout.SINGLE_FILE
    if not path.is_dir():
        raise LayoutError("not a folder nor a .nii/.nii.gz file", path=path)
    if (path / DATASET_JSON).is_file() or (path / "imagesTr").is_dir():
        return Layout.NNUNET
    if any(_is_nifti(p) for p in path.iterdir()):
        return Layout.BASIC
    raise LayoutError(
        "no .nii/.nii.gz files at the top level and no nnU-Net dataset.json/imagesTr", path=path
    )


def modality_for_channel(name: str) -> Modality | None:
    """Modality implied by an nnU-Net channel name (``CT``, ``T2``, ``ADC``...), if any."""
    cleaned = name.strip()
    if cleaned.upper() == "CT":
        return Modality.CT
    if _MR_CHANNEL.match(cleaned.replace("-", "").replace(" ", "")):
        return Modality.MR
    return None


def _optional_meta(folder: Path) -> MetaData:
    path = folder / META_DATA
    return load_meta_data(path) if path.exists() else MetaData.empty()


def _basic_seg(root: Path, stem: str) -> tuple[Path | None, NiftiImportError | None]:
    candidates = [
        root / f"{stem}_seg.nii.gz",
        root / f"{stem}_seg.nii",
        root / "segs" / f"{stem}.nii.gz",
        root / "segs" / f"{stem}.nii",
    ]
    found = [p for p in candidates if p.is_file()]
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in found)
        return None, LayoutError(f"more than one segmentation for the case: {names}", path=root)
    return (found[0] if found else None), None


def _plan_basic(root: Path, only: Path | None) -> ImportPlan:
    meta = _optional_meta(root)
    layout = Layout.BASIC if only is None else Layout.SINGLE_FILE
    plan = ImportPlan(layout, only or root, [], meta, None)
    images = sorted(
        p for p in root.iterdir() if _is_nifti(p) and not nifti_stem(p.name).endswith("_seg")
    )
    if only is not None:
        images = [only]
    used: set[Path] = set()
    stems: dict[str, Path] = {}
    for image in images:
        stem = nifti_stem(image.name)
        if stem in stems:
            plan.cases.append(
                CaseSpec(
                    stem,
                    (ChannelFile(0, "image", image),),
                    problem=LayoutError(
                        f"case {stem!r} exists as both {stems[stem].name} and {image.name}",
                        path=root,
                    ),
                )
            )
            continue
        stems[stem] = image
        seg, problem = _basic_seg(root, stem)
        if seg is not None:
            used.add(seg)
        plan.cases.append(CaseSpec(stem, (ChannelFile(0, "image", image),), seg, "", problem))
    if only is None:
        segs = [p for p in root.iterdir() if _is_nifti(p) and nifti_stem(p.name).endswith("_seg")]
        if (root / "segs").is_dir():
            segs += [p for p in (root / "segs").iterdir() if _is_nifti(p)]
        for seg in sorted(set(segs) - used):
            plan.warnings.append(f"{seg}: segmentation without a matching image, ignored")
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "segs"):
            if any(_is_nifti(p) for p in sub.rglob("*")):
                plan.warnings.append(f"{sub}: sub-folder with NIfTI files ignored (basic layout)")
        names = {nifti_stem(p.name) + ".nii" for p in images}
        for key in meta.series_keys():
            if (key[:-3] if key.lower().endswith(".gz") else key) not in names:
                plan.warnings.append(f"{meta.path}: series_tags key {key!r} matches no image file")
    if any(c.labelmap is not None for c in plan.cases):
        seg_info_path = root / SEG_INFO
        if not seg_info_path.exists() and (root / "segs" / SEG_INFO).exists():
            seg_info_path = root / "segs" / SEG_INFO
        if not seg_info_path.exists():
            raise MissingFileError(
                f"segmentations found but no {SEG_INFO} describes their labels", path=seg_info_path
            )
        plan.seg_info = load_seg_info(seg_info_path)
    return plan


def _plan_nnunet(root: Path, options: NiftiImportOptions) -> ImportPlan:
    doc_path = root / DATASET_JSON
    if not doc_path.is_file():
        raise MissingFileError("nnU-Net folder (imagesTr/) without dataset.json", path=doc_path)
    doc = read_json_object(doc_path)
    for key in ("channel_names", "labels"):
        if not isinstance(doc.data.get(key), dict) or not doc.data[key]:
            raise MalformedJsonError(
                f"'{key}' must be a non-empty object",
                path=doc_path,
                key=key,
                line=doc.line_of(key),
            )
    ending = doc.data.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or ending not in (".nii", ".nii.gz"):
        raise MalformedJsonError(
            f'\'file_ending\' must be ".nii.gz" or ".nii", got {ending!r}',
            path=doc_path,
            key="file_ending",
            line=doc.line_of("file_ending"),
        )
    channels: dict[int, str] = {}
    for raw_index, name in doc.data["channel_names"].items():
        if not str(raw_index).isdigit() or not isinstance(name, str):
            raise MalformedJsonError(
                'channel_names maps channel numbers ("0", "1", ...) to names',
                path=doc_path,
                key=str(raw_index),
                line=doc.line_of("channel_names", str(raw_index)),
            )
        channels[int(raw_index)] = name
    if sorted(channels) != list(range(len(channels))):
        raise MalformedJsonError(
            f"channel numbers must be 0..{len(channels) - 1}, got {sorted(channels)}",
            path=doc_path,
            key="channel_names",
            line=doc.line_of("channel_names"),
        )
    seg_info = seg_info_from_nnunet(doc.data["labels"], doc)
    plan = ImportPlan(Layout.NNUNET, root, [], _optional_meta(root), seg_info)
    pattern = re.compile(rf"^(.+)_(\d{{4}}){re.escape(ending)}$")
    splits = ["imagesTr"] + (["imagesTs"] if options.include_test_set else [])
    if not (root / "imagesTr").is_dir():
        raise MissingFileError("nnU-Net folder without imagesTr/", path=root / "imagesTr")
    seen: set[str] = set()
    for split in splits:
        folder = root / split
        if not folder.is_dir():
            continue
        found: dict[str, dict[int, Path]] = {}
        for path in sorted(folder.iterdir()):
            match = pattern.match(path.name)
            if match is None or not path.is_file():
                plan.warnings.append(f"{path}: not <case>_<XXXX>{ending}, ignored")
                continue
            found.setdefault(match.group(1), {})[int(match.group(2))] = path
        for case_id, files in sorted(found.items()):
            problem: NiftiImportError | None = None
            if sorted(files) != sorted(channels):
                problem = LayoutError(
                    f"case {case_id!r} has channels {sorted(files)}, dataset.json lists "
                    f"{sorted(channels)}",
                    path=folder,
                )
            if case_id in seen:
                problem = LayoutError(f"case {case_id!r} is in imagesTr and imagesTs", path=folder)
            seen.add(case_id)
            images = tuple(
                ChannelFile(i, channels[i], files[i], modality_for_channel(channels[i]))
                for i in sorted(files)
                if i in channels
            )
            label_dir = root / ("labelsTr" if split == "imagesTr" else "labelsTs")
            label = label_dir / f"{case_id}{ending}"
            if split == "imagesTr" and not label.is_file():
                plan.warnings.append(f"{label}: missing, case {case_id!r} converted without SEG")
            plan.cases.append(
                CaseSpec(case_id, images, label if label.is_file() else None, split, problem)
            )
    return plan


def plan_import(path: Path, options: NiftiImportOptions | None = None) -> ImportPlan:
    """Find the layout, cases and side files of an import.

    Parameters
    ----------
    path : pathlib.Path
        Import folder or single NIfTI file.
    options : NiftiImportOptions or None, optional
        Import options (``include_test_set`` matters here).

    Returns
    -------
    ImportPlan
        Cases to convert; cases with a discovery problem carry it in ``problem``.

    Raises
    ------
    LayoutError, MissingFileError
        If the folder has no convertible layout or lacks a required file.
    MetadataError
        If a folder-wide side file (``meta_data.json``, ``seg_info.json``,
        ``dataset.json``) is invalid: it concerns every case.
    """
    options = options or NiftiImportOptions()
    layout = detect_layout(path)
    if layout is Layout.NNUNET:
        return _plan_nnunet(path, options)
    if layout is Layout.SINGLE_FILE:
        return _plan_basic(path.parent, path)
    return _plan_basic(path, None)
