"""Presentation contexts the receiver accepts: every storage SOP class, and Verification.

Among the uncompressed syntaxes the receiver's order decides what is accepted when a sender
proposes several in one context: Explicit VR Little Endian first so Explicit VR senders are
not re-encoded to Implicit VR (pynetdicom's senders propose Implicit VR first whatever their
data). Any other syntax (compressed, deflated) that a sender proposes first is its data's own:
:mod:`receiver.negotiation` accepts that one, so compressed data arrives as it was compressed,
byte for byte, instead of being decompressed by the sender.
"""

from __future__ import annotations

from pydicom._uid_dict import UID_dictionary
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)
from pynetdicom import AllStoragePresentationContexts, build_context, sop_class
from pynetdicom._globals import ALL_TRANSFER_SYNTAXES
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

__all__ = [
    "RECEIVER_ORDERED_SYNTAXES",
    "TRANSFER_SYNTAXES",
    "storage_contexts",
    "storage_sop_classes",
]

_UNCOMPRESSED = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]
# Syntaxes newer than pynetdicom's list (PS3.5 2024+): encapsulated uncompressed, deflated
# image frames, JPEG XL and High-Throughput JPEG 2000.
_NEWER = [
    "1.2.840.10008.1.2.1.98",
    "1.2.840.10008.1.2.8.1",
    "1.2.840.10008.1.2.4.110",
    "1.2.840.10008.1.2.4.111",
    "1.2.840.10008.1.2.4.112",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
]

#: The uncompressed syntaxes: among them the receiver's order decides, whichever a sender
#: proposes first (see :mod:`receiver.negotiation`).
RECEIVER_ORDERED_SYNTAXES = frozenset(
    {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian}
)

#: Accepted transfer syntaxes in order of preference.
TRANSFER_SYNTAXES: list[str] = list(
    dict.fromkeys([*_UNCOMPRESSED, *ALL_TRANSFER_SYNTAXES, *_NEWER])
)


def storage_sop_classes() -> list[str]:
    """Every storage SOP class: pynetdicom's, plus the retired ones pydicom's dictionary knows.

    Old modalities still send retired classes (e.g. the pre-1996 Ultrasound Image Storage);
    an archive must take them.
    """
    known = {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}
    classes = list(known)
    for uid, (name, kind, _info, _retired, keyword) in UID_dictionary.items():
        if kind != "SOP Class" or not name.endswith(" Storage") or "Commitment" in name:
            continue
        if uid == MediaStorageDirectoryStorage or uid in known:
            continue
        # pynetdicom hands a C-STORE to its storage service only for classes it knows.
        if not hasattr(sop_class, keyword):
            sop_class.register_uid(uid, keyword, StorageServiceClass)
        classes.append(uid)
    return classes


def storage_contexts() -> list[PresentationContext]:
    """One context per storage SOP class with :data:`TRANSFER_SYNTAXES`, plus Verification."""
    contexts = [build_context(uid, TRANSFER_SYNTAXES) for uid in storage_sop_classes()]
    contexts.append(build_context(Verification))
    return contexts
