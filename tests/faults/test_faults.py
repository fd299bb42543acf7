"""The fault suite: break each component for real in the middle of the work and type nothing.

Each test sends CT series to a supervised stack of its own (:mod:`tests.faults.drill`), causes
one fault, and waits without acting. What a user relies on: no instance the sender was told is
stored goes missing, and every series that holds one ends complete (in the PACS, indexed, with
a thumbnail and its validation). How fast it heals is measured by ``bench/faults.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.faults import drill as drills
from tests.faults.drill import Drill, Outcome

pytestmark = [pytest.mark.stack, pytest.mark.faults]

SERIES, PER_SERIES = 4, 25
#: Seconds a drill waits for every series to be complete before it fails.
WAIT = 600.0


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    drill = Drill(tmp_path_factory.mktemp("drill"), spool_bytes=256 << 20)
    try:
        drill.up()
        yield drill
    finally:
        drill.down()


@pytest.fixture
def healthy(drill: Drill) -> Drill:
    """The drill's stack with every component answering (an earlier fault has healed)."""
    assert drill.all_healthy(), [r for r in drill.stack.status() if r.state.value != "healthy"]
    return drill


def assert_healed(outcome: Outcome, *, everything_acknowledged: bool = True) -> None:
    if everything_acknowledged:
        assert outcome.acknowledged == outcome.sent, "the doors refused instances"
    assert outcome.acknowledged > 0
    assert outcome.missing == [], "acknowledged instances are not in the PACS"
    assert outcome.series_complete == outcome.series_expected, outcome.incomplete
    assert outcome.seconds is not None


def test_receiver_killed_during_the_association(healthy: Drill) -> None:
    outcome = drills.kill_receiver(healthy, SERIES, PER_SERIES, WAIT)
    assert outcome.acknowledged < outcome.sent, "the association ended before the kill"
    assert_healed(outcome, everything_acknowledged=False)


@pytest.mark.parametrize("component", drills.DURING_RUNS)
def test_component_killed_during_the_runs(healthy: Drill, component: str) -> None:
    assert_healed(drills.kill_component(healthy, component, SERIES, PER_SERIES, WAIT))


def test_a_running_task_killed(healthy: Drill) -> None:
    assert_healed(drills.kill_task(healthy, SERIES, PER_SERIES, WAIT))


def test_a_sender_while_postgresql_is_down(healthy: Drill) -> None:
    assert_healed(drills.send_while_postgres_is_down(healthy, SERIES, PER_SERIES, WAIT))


def test_twenty_senders_while_the_scheduler_is_killed(healthy: Drill) -> None:
    assert_healed(drills.senders_while_scheduler_dies(healthy, 20, 5, WAIT))


def test_the_spool_fills_up_during_an_association_then_space_is_freed(healthy: Drill) -> None:
    if not healthy.spool_mounted:
        pytest.skip("the spool could not be put on a tmpfs of its own (needs root and mount)")
    outcome = drills.spool_fills_up(healthy, SERIES, PER_SERIES, WAIT)
    assert 0 < outcome.acknowledged < outcome.sent, "the disk did not fill up mid-association"
    assert_healed(outcome, everything_acknowledged=False)
    # With space again, the receiver takes a whole association.
    again = healthy.cargo(1, 10)
    acked = healthy.send(again.folder).wait()
    assert_healed(
        healthy.outcome("after the space was freed", again, acked, time.monotonic(), WAIT)
    )
