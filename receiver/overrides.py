"""The pynetdicom releases the receiver's subclasses mirror.

The receiver's subclasses (see :mod:`receiver.dul`, :mod:`receiver.association`,
:mod:`receiver.dimse`) mirror pynetdicom's code and reach into its private members, which
ties them to the release they were written against: :func:`fast_reactor_supported` lets
:class:`receiver.app.Receiver` use them only on :data:`SUPPORTED_PYNETDICOM` and fall back
to pynetdicom's own (slower) classes on any other release.
"""

from __future__ import annotations

import pynetdicom

__all__ = ["SUPPORTED_PYNETDICOM", "fast_reactor_supported"]

#: pynetdicom releases whose code the receiver's subclasses mirror.
SUPPORTED_PYNETDICOM = frozenset({"3.0.4"})


def fast_reactor_supported() -> bool:
    """Whether the installed pynetdicom is a release the event-driven reactors mirror."""
    return pynetdicom.__version__ in SUPPORTED_PYNETDICOM
