"""Handing a closed batch over: its DAG run, then its series indexed on arrival."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from dicomflow.airflow_api.client import AirflowClient, AirflowError
from dicomflow.config import Settings
from dicomflow.pipeline.steps import announce_quietly
from dicomflow.spool.outbox import trigger_batch
from dicomflow.spool.store import Spool

log = logging.getLogger(__name__)


def hand_off(settings: Settings, spool: Spool, batch_ids: Iterable[str]) -> list[str]:
    """Trigger each batch's DAG run now and index it on arrival (``index.on_arrival``).

    For doors that close batches outside the receiver (STOW-RS): without this they would wait
    for the receiver outbox's next look at the spool. A batch that cannot be triggered stays
    pending for that outbox, so nothing is lost when Airflow is down.

    Returns
    -------
    list of str
        The batches triggered.
    """
    triggered = []
    with AirflowClient.from_settings(settings) as client:
        for batch_id in batch_ids:
            try:
                trigger_batch(spool, client, spool.batch(batch_id))
            except AirflowError as exc:
                log.warning("batch %s left pending for the receiver's outbox: %s", batch_id, exc)
                break
            triggered.append(batch_id)
            if settings.index.on_arrival:
                announce_quietly(settings, batch_id)
    return triggered
