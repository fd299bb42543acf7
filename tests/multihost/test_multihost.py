"""Receivers and workers on several hosts with Airflow's CeleryExecutor, on one machine.

Network namespaces joined by veth links to a bridge (:mod:`tests.multihost.site`): one host for
the shared services (PostgreSQL, Orthanc, SeaweedFS, Redis, Airflow's API server, scheduler,
DAG processor and triggerer), two receiver hosts (``dicomflow receiver``), two worker hosts
(``dicomflow worker``) and a sender. What a site relies on:

- two ``dcmsend`` to each receiver: every series complete (in the PACS, indexed, thumbnail,
  validation), the batches read by workers that do not hold the receivers' spools;
- every process of a worker host killed (``kill -9``) while it runs a task: its tasks run again
  on the other worker, and no acknowledged instance is lost;
- a receiver host down: the other keeps receiving, and what it receives is complete.

Root only (namespaces and links); about 10 minutes. Select with ``-m multihost``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.drill import make_cargo
from tests.multihost.site import Site

# Starting five hosts takes minutes on two cores; a dead worker host costs two more.
pytestmark = [pytest.mark.multihost, pytest.mark.timeout(2400)]

#: Seconds to wait for every series to be complete.
WAIT = 900.0


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it makes network namespaces (ip netns) and veth links"
    for program in ("ip", "redis-server", "dcmsend"):
        if shutil.which(program) is None:
            return f"needs `{program}` (scripts/install.sh installs it)"
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    site = Site(tmp_path_factory.mktemp("site"))
    try:
        site.build_network()
        site.start_all()
        yield site
    finally:
        site.tear_down()


def _cargo(
    site: Site, name: str, series: int = 2, per_series: int = 12
) -> tuple[Path, dict[str, set[str]]]:
    cargo = make_cargo(site.work / name, series, per_series)
    return cargo.folder, cargo.series


def test_two_senders_per_receiver_complete_and_a_dead_worker_host_loses_nothing(
    site: Site,
) -> None:
    expected: dict[str, set[str]] = {}
    acked: set[str] = set()
    sends = []
    for r, receiver in enumerate(site.receivers):
        for s in range(2):
            folder, series = _cargo(site, f"r{r}-s{s}")
            expected.update(series)
            sends.append(site.send(receiver, folder, f"r{r}-s{s}"))
    victim = site.workers[0]
    # kill -9 every process of the first worker host while it runs a task.
    deadline = time.monotonic() + 600
    running: list[tuple[str, str, str, int, str]] = []
    while not running:
        assert time.monotonic() < deadline, "no task ever ran on the first worker host"
        running = site.tasks(f"state = 'running' AND hostname = '{victim.hostname}'")
        time.sleep(0.2)
    # Its worker imported the tasks' modules before forking its pool (Pillow, for the
    # thumbnails, is nothing Airflow or Celery load): each task process starts with them.
    assert "PIL/_imaging" in victim.celery_worker_maps()
    assert victim.kill_everything() > 0
    for send in sends:
        acked |= send.wait()
    sent = set().union(*expected.values())
    assert acked == sent, f"{len(sent - acked)} instance(s) not acknowledged"

    in_pacs, incomplete = site.wait_complete(expected, WAIT)
    assert acked <= in_pacs, f"{len(acked - in_pacs)} acknowledged instance(s) lost"
    assert incomplete == {}, incomplete
    assert victim.pids() == [], "the killed worker host stays down: the other did its tasks"
    # The tasks it was running ran again, on the other worker host, and succeeded.
    for run_id, task_id, _, tries, _ in running:
        [(_, _, state, tries_now, host)] = site.tasks(
            f"run_id = '{run_id}' AND task_id = '{task_id}'"
        )
        assert (state, host) == ("success", site.workers[1].hostname)
        assert tries_now > tries
    # Each receiver settles its own batches from Airflow's record (their finish ran on a
    # worker): done, files gone, and the object store's copies released after that.
    for receiver in site.receivers:
        assert site.wait_settled(receiver, WAIT) == [], f"{receiver.netns}: batches not settled"


def test_with_one_receiver_host_down_the_other_keeps_receiving(site: Site) -> None:
    down, up = site.receivers
    assert down.kill_everything() > 0
    folder, series = _cargo(site, "after-receiver-down")
    acked = site.send(up, folder, "after-receiver-down").wait()
    assert acked == set().union(*series.values())
    in_pacs, incomplete = site.wait_complete(series, WAIT)
    assert acked <= in_pacs
    assert incomplete == {}, incomplete
