"""When the supervisor starts a dead component again, and when it gives up."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """How the supervisor answers crashes.

    The first crash is answered at once; further crashes within ``window`` seconds wait 1, 2,
    4, ... seconds (at most ``max_delay``) before the next start, and the crash after
    ``max_restarts`` restarts within the window makes the supervisor give up on the component.

    Parameters
    ----------
    max_restarts
        Restarts within the window before the supervisor gives up.
    window
        Seconds over which crashes are counted; a component that ran longer starts afresh.
    max_delay
        Longest wait before a restart.
    """

    max_restarts: int = 5
    window: float = 300.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_restarts < 1 or self.window <= 0 or self.max_delay < 0:
            raise ValueError(
                f"restart policy needs max_restarts >= 1, window > 0 and max_delay >= 0, got {self}"
            )

    def delay(self, crashes: int) -> float:
        """Seconds to wait before the restart that answers the ``crashes``-th recent crash."""
        return 0.0 if crashes <= 1 else min(self.max_delay, 2.0 ** (crashes - 2))

    def as_args(self) -> list[str]:
        """Command-line options of the supervisor process that carry this policy."""
        return [
            f"--max-restarts={self.max_restarts}",
            f"--window={self.window}",
            f"--max-delay={self.max_delay}",
        ]


class CrashHistory:
    """The recent crashes of one component, on the monotonic clock."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._times: deque[float] = deque()

    def crashed(self, now: float) -> float | None:
        """Count a crash at ``now``; the seconds to wait before restarting, or ``None``: give up."""
        while self._times and now - self._times[0] > self.policy.window:
            self._times.popleft()
        self._times.append(now)
        if len(self._times) > self.policy.max_restarts:
            return None
        return self.policy.delay(len(self._times))

    @property
    def recent(self) -> int:
        """Crashes counted in the window so far."""
        return len(self._times)

    def forget(self) -> None:
        """Start afresh (a user asked for the component with `dicomflow up`)."""
        self._times.clear()
