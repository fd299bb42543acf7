"""The supervisor's answer to a component's crashes: at once, then slower, then it gives up."""

from __future__ import annotations

import pytest

from dicomflow.stack.policy import CrashHistory, RestartPolicy


def test_crashes_are_answered_at_once_then_with_backoff_then_given_up() -> None:
    history = CrashHistory(RestartPolicy(max_restarts=5, window=300, max_delay=30))
    delays = [history.crashed(float(t)) for t in range(6)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, None]


def test_crashes_outside_the_window_count_no_more() -> None:
    history = CrashHistory(RestartPolicy(max_restarts=2, window=60, max_delay=30))
    assert history.crashed(0.0) == 0.0
    assert history.crashed(10.0) == 1.0
    # The component then ran for longer than the window: its next crash is a first one.
    assert history.crashed(100.0) == 0.0
    history.forget()  # `dicomflow up` gives a component given up on a fresh start
    assert history.recent == 0


def test_delays_stop_growing_at_the_maximum() -> None:
    policy = RestartPolicy(max_restarts=20, window=300, max_delay=30)
    assert [policy.delay(n) for n in (1, 2, 6, 7, 20)] == [0.0, 1.0, 16.0, 30.0, 30.0]


def test_a_policy_that_cannot_restart_is_refused() -> None:
    with pytest.raises(ValueError, match="max_restarts >= 1"):
        RestartPolicy(max_restarts=0)
