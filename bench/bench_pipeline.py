"""End to end: 2,000 small instances in 20 series through one dcmsend, until all are validated.

Reference, measured in the same run: Orthanc alone receiving the same files by C-STORE (it
stores each instance before answering). Ours: the whole platform on a stack of its own: the
receiver, the processing DAG (PACS, thumbnails, validation of a representative set, index,
mappings) and the background validation lane (every other instance), measured after one small
warm-up batch (``--cold`` measures the first batch after ``up``). Prints rows
``measure | ours | reference | ratio | goal`` and the time per task of both DAGs; never asserts.

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
from dicomflow.dicom.headers import Instance, group_series
from dicomflow.index import open_index
from dicomflow.spool.store import Spool
from dicomflow.stack.isolated import free_port, stack_data_dir, stack_environment
from dicomflow.stack.supervisor import Stack
from dicomflow.validation.series import representative_instances, sample_evenly

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smoke import parse_args

DAG_ID = "service-process-incoming-dcm"
VALIDATION_DAG_ID = "service-validate-instances"


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
        # Two instances: the representative set is the whole series.
        while not (_processed(doc := index.get("warmup", uid) or {}) and _checked(doc) >= 2):
            if time.monotonic() > deadline:
                # Measuring after a warm-up batch that never finished measures a broken stack.
                raise SystemExit(f"the warm-up batch was not complete within {wait:.0f} s")
            time.sleep(0.2)
    finally:
        index.close()


def to_check(folder: Path, sample: int | None) -> dict[str, int]:
    """Instances the two validation lanes check, by series: the representative set, and
    ``validation.sample`` of the series (all when ``None``) in the background lane."""
    counts = {}
    for group in group_series(sorted(folder.iterdir())).series:
        ordered = sorted(group.instances, key=Instance.sort_key)
        chosen = representative_instances(group) + sample_evenly(ordered, sample)
        counts[group.series_instance_uid] = len({i.sop_instance_uid for i in chosen})
    return counts


def ours(
    settings: Settings, folder: Path, expected: dict[str, int], per_series: int, wait: float
) -> dict[str, float]:
    """Send the files; seconds until each milestone was reached by the last series."""
    ProjectStore(make_engine(settings.platform_db_url)).create_project("bench")
    index = open_index(settings)
    start = time.monotonic()
    send = dcmsend(settings.receiver.port, folder, "bench", "bench")
    released = time.monotonic()
    # Milestone -> series that have not reached it yet, and when the last one did.
    waiting = {name: set(expected) for name in ("searchable", "processed", "validated")}
    reached: dict[str, float] = {}
    while waiting["validated"] and time.monotonic() - start < wait:
        for uid in list(waiting["validated"]):
            doc = index.get("bench", uid)
            if not doc or doc.get("instance_count") != per_series:
                continue
            met = {
                "searchable": True,
                "processed": _processed(doc),
                "validated": _processed(doc) and _checked(doc) >= expected[uid],
            }
            for name, done in met.items():
                if done and uid in waiting[name]:
                    waiting[name].discard(uid)
                    if not waiting[name]:
                        reached[name] = time.monotonic()
        time.sleep(0.05)
    index.close()
    if waiting["validated"]:
        late = {name: len(uids) for name, uids in waiting.items() if uids}
        raise SystemExit(f"series short of each milestone after {wait:.0f} s: {late}")
    return {
        "send": send,
        "total": reached["validated"] - start,
        **{name: at - released for name, at in reached.items()},
    }


def _processed(doc: dict[str, Any]) -> bool:
    """Stored in the PACS, with a thumbnail and the validation of its representative set."""
    return (
        doc.get("pacs_state") == "stored"
        and bool(doc.get("thumbnail_key"))
        and bool(doc.get("validation"))
    )


def _checked(doc: dict[str, Any]) -> int:
    """How many of the series' instances were validated so far (both lanes)."""
    return int((doc.get("validation") or {}).get("instances_checked") or 0)


def step_times(settings: Settings) -> tuple[dict[str, float], dict[str, int], int]:
    """Seconds per task (``DAG: task``) summed over the runs that took the benchmark's
    batches; the runs per DAG; and the batches."""
    batch_ids = {b.id for b in Spool.from_settings(settings).batches() if b.project == "bench"}
    totals: dict[str, float] = {}
    runs: dict[str, int] = {}
    with AirflowClient.from_settings(settings) as client:
        for dag_id in (DAG_ID, VALIDATION_DAG_ID):
            # A run may take several batches (conf batch_ids); count each run once.
            for run in client.list_dag_runs(dag_id, limit=1000):
                if not batch_ids & set((run.get("conf") or {}).get("batch_ids") or []):
                    continue
                runs[dag_id] = runs.get(dag_id, 0) + 1
                # The last task may still be finishing after it wrote what was waited for.
                _wait_for_end(client, dag_id, run["dag_run_id"])
                for ti in client.task_instances(dag_id, run["dag_run_id"]):
                    if ti.get("start_date") and ti.get("end_date"):
                        took = (
                            datetime.fromisoformat(ti["end_date"])
                            - datetime.fromisoformat(ti["start_date"])
                        ).total_seconds()
                        key = f"{dag_id}: {ti['task_id']}"
                        totals[key] = totals.get(key, 0.0) + took
    return totals, runs, len(batch_ids)


def _wait_for_end(client: AirflowClient, dag_id: str, run_id: str, wait: float = 60.0) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        run = client.get_dag_run(dag_id, run_id)
        if run is None or run.get("state") in ("success", "failed"):
            return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--per-series", type=int, default=100)
    parser.add_argument(
        "--validation-sample",
        type=int,
        default=0,
        help="validation.sample of the stack (instances the background lane checks per series; "
        "0: all, the default)",
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
        help="seconds to wait for every series to be validated before giving up",
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
        make_instances(files, args.series, args.per_series)
        expected = to_check(files, args.validation_sample or None)
        n = args.series * args.per_series
        reference = orthanc_alone(files, work)
        stack.up(report=lambda _m: None)
        if not args.cold:
            warm_up(settings, work, args.wait)
        result = ours(settings, files, expected, args.per_series, args.wait)
        steps, runs, batches = step_times(settings)
    finally:
        stack.down(report=lambda _m: None)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{'measure':72} | {'ours':>10} | {'reference':>10} | {'ratio':>6} | goal")
    ours_rate, ref_rate = n / result["total"], n / reference
    checked = f"{args.validation_sample}/series" if args.validation_sample else "all"
    rate_name = f"end-to-end rate, {n} instances, {args.series} series, validated {checked}"
    print(
        f"{rate_name:72} | {ours_rate:10.0f} | {ref_rate:10.0f} | "
        f"{ours_rate / ref_rate:6.2f} | >= 0.5x Orthanc alone"
    )
    print(
        f"{'receive time by dcmsend (s)':72} | {result['send']:10.2f} | {reference:10.2f} | "
        f"{reference / result['send']:6.2f} | -"
    )
    print(
        f"{'association release -> last series searchable (s)':72} | "
        f"{result['searchable']:10.2f} | {'-':>10} | {'-':>6} | <= 2 s"
    )
    for name, measure in (
        ("processed", "association release -> stored, thumbnails, first validation (s)"),
        ("validated", "association release -> every instance validated (s)"),
    ):
        print(f"{measure:72} | {result[name]:10.2f} | {'-':>10} | {'-':>6} | -")
    print(f"{'batches':72} | {batches:10d} | {'-':>10} | {'-':>6} | -")
    for dag_id in (DAG_ID, VALIDATION_DAG_ID):
        print(f"{'  runs of ' + dag_id:72} | {runs.get(dag_id, 0):10d} | {'-':>10} | {'-':>6} | -")
    for task, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        step = f"  {task} (s, summed over runs)"
        print(f"{step:72} | {seconds:10.2f} | {'-':>10} | {'-':>6} | -")


if __name__ == "__main__":
    main()
