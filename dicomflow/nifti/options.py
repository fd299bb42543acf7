"""Options of a NIfTI import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from dicomflow.nifti.enums import FourDPolicy, Modality, UnknownLabelPolicy

__all__ = ["DEFAULT_UID_PREFIX", "SWITCHES", "NiftiImportOptions", "Switch"]

#: Root of generated UIDs when no organisation root is configured (pydicom's root).
DEFAULT_UID_PREFIX = "1.2.826.0.1.3680043.8.498."


@dataclass(frozen=True)
class NiftiImportOptions:
    """Switches of a NIfTI import.

    Parameters
    ----------
    default_modality : Modality
        Modality of a series whose modality is neither tagged (``0008|0060``)
        nor recognisable from an nnU-Net channel name.
    unknown_labels : UnknownLabelPolicy
        What to do with label values that are not described.
    four_d : FourDPolicy
        Split 4D volumes into one series per volume, or refuse them.
    include_test_set : bool
        Also convert nnU-Net ``imagesTs/`` cases.
    uid_namespace : str
        Mixed into every generated UID. Identical inputs converted with the
        same namespace get identical UIDs (re-runs are idempotent); use e.g.
        ``"project/dataset"`` to keep the same files imported into two
        places apart.
    uid_prefix : str
        Organisation root of generated UIDs, ending with ``"."``.
    study_datetime : datetime or None
        Study/series date and time written when the tags do not give them.
        ``None`` means the time the conversion starts (``dciodvfy`` warns
        about empty study dates, so something has to be written).
    manufacturer : str
        Manufacturer (0008,0070) of the written objects, i.e. this converter.
    orthogonality_tolerance : float
        Largest accepted absolute cosine between two voxel axes before an
        affine counts as sheared.
    grid_tolerance_mm : float
        Largest accepted difference (mm) between the affine of a label map
        and the affine of its image.
    """

    default_modality: Modality = Modality.MR
    unknown_labels: UnknownLabelPolicy = UnknownLabelPolicy.ERROR
    four_d: FourDPolicy = FourDPolicy.SPLIT
    include_test_set: bool = True
    uid_namespace: str = ""
    uid_prefix: str = DEFAULT_UID_PREFIX
    study_datetime: datetime | None = None
    manufacturer: str = "dicomflow"
    orthogonality_tolerance: float = 1e-4
    grid_tolerance_mm: float = 1e-3

    @classmethod
    def from_choices(
        cls,
        *,
        modality: str | None = None,
        unknown_labels: str | None = None,
        four_d: str | None = None,
    ) -> NiftiImportOptions:
        """Options from the user's choices as text (a form, Params, a command line).

        Empty choices keep the defaults; the modality is read case-insensitively.

        Raises
        ------
        ValueError
            For a choice that is not one of the switch's values (the message lists them).
        """
        chosen: dict[str, Enum] = {}
        for switch, raw in zip(SWITCHES, (modality, unknown_labels, four_d), strict=True):
            text = (raw or "").strip()
            if text:
                chosen[switch.field] = switch.parse(text)
        return cls(**chosen)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Switch:
    """A user-facing switch of the NIfTI import: the one description every door shows.

    Attributes
    ----------
    name
        The choice's name in forms and Params (``modality``, ``unknown_labels``, ``four_d``).
    flag
        The command-line option.
    field
        The :class:`NiftiImportOptions` field it sets.
    enum
        Its values.
    title, help
        A label and a sentence for the user.
    """

    name: str
    flag: str
    field: str
    enum: type[Enum]
    title: str
    help: str

    @property
    def values(self) -> list[str]:
        """The accepted values."""
        return [str(member.value) for member in self.enum]

    @property
    def default(self) -> str:
        """The value the options use when the user chooses nothing."""
        return str(getattr(NiftiImportOptions(), self.field).value)

    def parse(self, text: str) -> Enum:
        """The member for a user's text (the modality case-insensitively).

        Raises
        ------
        ValueError
            When ``text`` is none of :attr:`values`.
        """
        for member in self.enum:
            if str(member.value).lower() == text.lower():
                return member
        raise ValueError(f"{self.name}: {text!r} is not one of {', '.join(self.values)}")


#: The switches of a NIfTI import, in the order forms show them.
SWITCHES: tuple[Switch, ...] = (
    Switch(
        "modality",
        "--modality",
        "default_modality",
        Modality,
        "Default modality",
        "Modality of volumes that no tag (0008|0060) or nnU-Net channel name gives.",
    ),
    Switch(
        "unknown_labels",
        "--unknown-labels",
        "unknown_labels",
        UnknownLabelPolicy,
        "Label values not described",
        "error: the case fails; segment: each becomes a segment 'unknown (label N)'.",
    ),
    Switch(
        "four_d",
        "--4d",
        "four_d",
        FourDPolicy,
        "4D volumes",
        "split: one series per volume; refuse: the case fails.",
    ),
)
