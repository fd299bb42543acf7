"""Presentation context negotiation that keeps a sender's compressed data as it was sent.

Replaces ``pynetdicom.presentation.negotiate_as_acceptor`` where ``pynetdicom.acse`` calls it
for an association acceptor, by a wrapper around it; written for pynetdicom 3.0.4 (the pinned
release), whose function it runs unchanged before adjusting its result. pynetdicom accepts
the first of the *acceptor's* transfer syntaxes that the requestor proposed. dcmtk's senders
propose a losslessly compressed or deflated file's own syntax first with the uncompressed ones
after it, to fall back on by decompressing: by the acceptor's order (Explicit VR Little Endian
first, see :mod:`receiver.contexts`) they decompress. Here the requestor's first proposed
syntax wins when it is one of those encodings and the receiver accepts it; every other choice
stays pynetdicom's, roles included.
"""

from __future__ import annotations

from pynetdicom import acse, presentation
from pynetdicom.presentation import PresentationContext, RoleType

from receiver.contexts import RECEIVER_ORDERED_SYNTAXES

__all__ = ["install", "negotiate_as_acceptor"]

#: Result of an accepted presentation context (PS3.8 9.3.3.2).
_ACCEPTANCE = 0x00

_negotiate = presentation.negotiate_as_acceptor


def negotiate_as_acceptor(
    rq_contexts: list[PresentationContext],
    ac_contexts: list[PresentationContext],
    roles: RoleType = None,
) -> presentation.CXNegotiationReturn:
    """pynetdicom's negotiation, then the requestor's own compressed syntax where offered first.

    Parameters and return value are those of
    :func:`pynetdicom.presentation.negotiate_as_acceptor`.
    """
    result, reply_roles = _negotiate(rq_contexts, ac_contexts, roles)
    accepted = {cx.abstract_syntax: cx.transfer_syntax for cx in ac_contexts}
    first_proposed = {
        cx.context_id: cx.transfer_syntax[0] for cx in rq_contexts if cx.transfer_syntax
    }
    for context in result:
        if context.result != _ACCEPTANCE:
            continue
        own = first_proposed.get(context.context_id)
        if (
            own is not None
            and own not in RECEIVER_ORDERED_SYNTAXES
            and own in accepted.get(context.abstract_syntax, [])
        ):
            context.transfer_syntax = [own]
    return result, reply_roles


def install() -> None:
    """Make pynetdicom's association acceptor negotiate with :func:`negotiate_as_acceptor`.

    Process-wide, like pynetdicom's own settings; idempotent.

    Raises
    ------
    RuntimeError
        If ``pynetdicom.acse`` no longer calls pynetdicom's function under that name: a
        pynetdicom upgrade changed the negotiation and this module must be reviewed.
    """
    current = getattr(acse, "negotiate_as_acceptor", None)
    if current is negotiate_as_acceptor:
        return
    if current is not _negotiate:
        raise RuntimeError(
            "pynetdicom.acse no longer calls pynetdicom.presentation.negotiate_as_acceptor; "
            "review receiver/negotiation.py for this pynetdicom release"
        )
    acse.negotiate_as_acceptor = negotiate_as_acceptor
