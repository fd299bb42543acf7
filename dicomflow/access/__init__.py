"""Access: accounts, roles, sign-in, sessions, tokens, throttling, the audit trail.

Every door that has users asks the same place whether a user may act on a project:
:data:`dicomflow.access.policy.POLICY` (``POLICY.may(principal, Action.X, project)``). The
DIMSE receiver has no users; its senders are checked by admission (per-project sender rules).
"""

from dicomflow.access.policy import POLICY, AccessDeniedError, Action, Principal, Role

__all__ = ["POLICY", "AccessDeniedError", "Action", "Principal", "Role"]
