"""End to end: 2,000 small instances in 20 series through one dcmsend, until all are indexed.

Reference, measured in the same run: Orthanc alone receiving the same files by C-STORE (it
stores each instance before answering). Ours: the whole platform on a stack of its own: the
receiver, the processing DAG (PACS, thumbnails, validation, index, mappings), measured after
one small warm-up batch (``--cold`` measures the first batch after ``up``). Prints rows
``measure | ours | reference | ratio | goal`` and the time per pipeline step; never asserts.

Usage: ``python bench/bench_pipeline.py [--series 20] [--per-series 100] [--smoke] ...``
(``--help`` lists the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicomflow.airflow_api.client import AirflowClient
from dicomflow.config import Settings, load_settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.index import open_index
from dicomflow.spool.store import Spool
from dicomflow.stack.isolated import free_port, stack_data_dir, stack_environment
from dicomflow.stack.supervisor import Stack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smoke import parse_args

DAG_ID = "service-process-incoming-dcm"


def make_instances(folder: Path, series: int, per_series: int) -> list[str]:
    """``series`` x ``per_series`` CT instances of 64x64 pixels (about 9 KB each)."""
    source = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    pixels = np.ascontiguousarray(source.pixel_array[::2, ::2])
    source.Rows, source.Columns = pixels.shape
    source.PixelData = pixels.tobytes()
    uids: list[str] = []
    for s in range(series):
        series_uid = generate_uid()
        uids.append(series_uid)
        for i in range(per_series):
            source.SeriesInstanceUID = series_uid
            source.SeriesNumber = s + 1
            source.SOPInstanceUID = generate_uid()
            source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
            source.InstanceNumber = i + 1
            source.ImagePositionPatient = [0.0, 0.0, float(i)]
            source.save_as(folder / f"s{s:02d}-{i:04d}.dcm", enforce_file_format=True)
    return uids


def dcmsend(port: int, folder: Path, calling: str, called: str) -> float:
    start = time.monotonic()
    subprocess.run(
        [
            "dcmsend",
            "127.0.0.1",
            str(port),
            "--aetitle",
            calling,
            "--call",
            called,
            "--scan-directories",
            str(folder),
        ],
        env={**os.environ, "TCP_NODELAY": "1"},
        check=True,
        capture_output=True,
    )
    return time.monotonic() - start


def orthanc_alone(folder: Path, work: Path) -> float:
    """Seconds for Orthanc (DICOM port on) to receive every file from dcmsend."""
    http, dicom = free_port(), free_port()
    config = {
        "StorageDirectory": str(work / "orthanc"),
        "IndexDirectory": str(work / "orthanc"),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "AuthenticationEnabled": False,
        "Plugins": [],
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    # dcmtk inside Orthanc sets TCP_NODELAY only when the variable is set: without it Nagle's
    # algorithm caps it at ~20 instances/s.
    proc = subprocess.Popen(
        ["Orthanc", str(work / "orthanc.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", dicom), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        return dcmsend(dicom, folder, "BENCH", "ORTHANC")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def warm_up(settings: Settings, work: Path, wait: float) -> None:
    """One small batch through the whole platform, as on a site that is already running.

    The first DAG run after `dicomflow up` pays one-off start-up costs (Airflow's first task
    process, first requests to each service) that a running site has paid long before.
    """
    projects = ProjectStore(make_engine(settings.platform_db_url))
    projects.create_project("warmup")
    folder = work / "warmup"
    folder.mkdir()
    (uid,) = make_instances(folder, 1, 2)
    dcmsend(settings.receiver.port, folder, "warmup", "warmup")
    index = open_index(settings)
    deadline = time.monotonic() + wait
    try:
        while not _complete(index.get("warmup", uid) or {}):
            if time.monotonic() > deadline:
                # Measuring after a warm-up batch that never finished measures a broken stack.
                raise SystemExit(f"the warm-up batch was not complete within {wait:.0f} s")
            time.sleep(0.2)
    finally:
        index.close()


def ours(
    settings: Settings, folder: Path, series_uids: list[str], per_series: int, wait: float
) -> dict[str, float]:
    ProjectStore(make_engine(settings.platform_db_url)).create_project("bench")
    index = open_index(settings)
    start = time.monotonic()
    send = dcmsend(settings.receiver.port, folder, "bench", "bench")
    released = time.monotonic()
    unsearchable = set(series_uids)
    remaining = set(series_uids)
    searchable = released
    while remaining and time.monotonic() - start < wait:
        for uid in list(remaining):
            doc = index.get("bench", uid)
            if not doc or doc.get("instance_count") != per_series:
                continue
            if uid in unsearchable:
                unsearchable.discard(uid)
                if not unsearchable:
                    searchable = time.monotonic()
            if _complete(doc):
                remaining.discard(uid)
        time.sleep(0.05)
    done = time.monotonic()
    index.close()
    if remaining:
        raise SystemExit(f"{len(remaining)} series were not complete within {wait:.0f} s")
    return {
        "send": send,
        "total": done - start,
        "searchable": searchable - released,
        "complete": done - released,
    }


def _complete(doc: dict[str, Any]) -> bool:
    """Stored in the PACS, with a thumbnail and a validation run for each of its batches."""
    runs = {run.get("batch_id") for run in (doc.get("validation") or {}).get("runs") or []}
    return (
        doc.get("pacs_state") == "stored"
        and bool(doc.get("thumbnail_key"))
        and set(doc.get("batch_ids") or []) <= runs
    )


def step_times(settings: Settings) -> tuple[dict[str, float], int]:
    """Seconds per task, summed over the runs of the benchmark's batches; and the runs."""
    totals: dict[str, float] = {}
    runs = 0
    spool = Spool.from_settings(settings)
    with AirflowClient.from_settings(settings) as client:
        for batch in spool.batches():
            if batch.project != "bench" or not batch.run_id:
                continue
            runs += 1
            for ti in client.task_instances(DAG_ID, batch.run_id):
                if ti.get("start_date") and ti.get("end_date"):
                    took = (
                        datetime.fromisoformat(ti["end_date"])
                        - datetime.fromisoformat(ti["start_date"])
                    ).total_seconds()
                    totals[ti["task_id"]] = totals.get(ti["task_id"], 0.0) + took
    return totals, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--per-series", type=int, default=100)
    parser.add_argument(
        "--validation-sample",
        type=int,
        default=0,
        help="validation.sample of the stack (instances checked per series; 0: all, the default)",
    )
    parser.add_argument(
        "--batch-max-instances",
        type=int,
        default=None,
        help="receiver.batch_max_instances of the stack (default: the configured one)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="measure the first batch after `up` (default: after one warm-up batch)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=900.0,
        help="seconds to wait for every series to be complete before giving up",
    )
    args = parse_args(parser, {"series": 2, "per_series": 5, "wait": 180.0})
    work = Path(tempfile.mkdtemp(prefix="dicomflow-bench-"))
    data_dir = stack_data_dir()
    env = stack_environment(data_dir)
    env["DICOMFLOW_VALIDATION__SAMPLE"] = str(args.validation_sample)
    if args.batch_max_instances is not None:
        env["DICOMFLOW_RECEIVER__BATCH_MAX_INSTANCES"] = str(args.batch_max_instances)
    settings = load_settings(
        environ={**{k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}, **env}
    )
    stack = Stack(settings)
    try:
        files = work / "files"
        files.mkdir()
        uids = make_instances(files, args.series, args.per_series)
        n = args.series * args.per_series
        reference = orthanc_alone(files, work)
        stack.up(report=lambda _m: None)
        if not args.cold:
            warm_up(settings, work, args.wait)
        result = ours(settings, files, uids, args.per_series, args.wait)
        steps, runs = step_times(settings)
    finally:
        stack.down(report=lambda _m: None)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{'measure':58} | {'ours':>10} | {'reference':>10} | {'ratio':>6} | goal")
    ours_rate, ref_rate = n / result["total"], n / reference
    checked = f"{args.validation_sample}/series" if args.validation_sample else "all"
    rate_name = f"end-to-end rate, {n} instances, {args.series} series, validated {checked}"
    print(
        f"{rate_name:58} | {ours_rate:10.0f} | {ref_rate:10.0f} | "
        f"{ours_rate / ref_rate:6.2f} | >= 0.5x Orthanc alone"
    )
    print(
        f"{'receive time by dcmsend (s)':58} | {result['send']:10.2f} | {reference:10.2f} | "
        f"{reference / result['send']:6.2f} | -"
    )
    print(
        f"{'association release -> last series searchable (s)':58} | "
        f"{result['searchable']:10.2f} | {'-':>10} | {'-':>6} | <= 2 s"
    )
    print(
        f"{'association release -> thumbnails and validation in (s)':58} | "
        f"{result['complete']:10.2f} | {'-':>10} | {'-':>6} | -"
    )
    print(f"{'batches (DAG runs)':58} | {runs:10d} | {'-':>10} | {'-':>6} | -")
    for task, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        step = f"  step {task} (s, summed over runs)"
        print(f"{step:58} | {seconds:10.2f} | {'-':>10} | {'-':>6} | -")


if __name__ == "__main__":
    main()
