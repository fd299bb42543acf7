"""How senders really send: one association, many senders, one image per association, ...

Each scenario sends fresh instances into a whole stack of its own (after one warm-up batch)
and follows every series to four milestones: *searchable* (its document lists every
instance), *stored* (``pacs_state: stored``), *complete* (stored, with a thumbnail and the
validation of its representative set) and *validated* (every instance checked by the two
validation lanes). References are measured in the same run: Orthanc alone receiving the same
files by C-STORE into its own storage, dcmtk's ``storescp`` for receive rates, plain
``dciodvfy`` processes for the background validation lane, and our own one-association time
for the many-sender scenarios.

Scenarios (``--scenarios a,b``; default all):

* ``one``: ``--instances`` (2,000) ~39 KB CT in ``--series`` (20) series, one association;
* ``senders``: the same number of new instances split between ``--senders`` (20 and 50)
  concurrent dcmsend processes (against ``one``'s time, which is run for it if not chosen);
* ``associations``: ``--associations`` (100) instances of one series, ``storescu`` once per
  file, against the same number through one association, and against Orthanc alone taking
  the same per-file associations (what the sender's process starts cost anyway);
* ``single``: ``--single`` (300) single-instance series in one association;
* ``series``: one ``--series-size`` (5,000) instance series;
* ``large``: ``--large`` (200) x 500 KB in one association.

Prints rows ``scenario | measure | ours | reference | ratio | goal`` (and the task times of
both DAGs per scenario); never asserts. CPU-seconds are summed over every process of the
stack (receiver, dispatcher, Airflow and its task processes, Orthanc, PostgreSQL, the S3
server) from the first byte sent until the last series was validated, and over Orthanc's
process for Orthanc alone; the rows ``CPU ms per instance: <part>`` split the stack's by
component (dciodvfy and Airflow's task processes apart, :class:`platform_bench.ComponentCpu`).

Usage: ``python bench/bench_scenarios.py [--scenarios one,single] [--smoke] ...`` (``--help``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from platform_bench import (
    VALIDATION_DAG_ID,
    ComponentCpu,
    Reference,
    StackCpu,
    bench_settings,
    dcmsend,
    dcmsend_parallel,
    expected_of,
    files_of,
    load,
    make_instances,
    orthanc_alone,
    plain_dciodvfy_rate,
    representative_count,
    scratch,
    step_times,
    storescp_alone,
    storescu_each,
    warm_up,
    watch,
)
from smoke import parse_args

from dicomflow.config import Settings
from dicomflow.db.projects import ProjectStore
from dicomflow.db.session import make_engine
from dicomflow.stack.supervisor import Stack

SCENARIOS = ("one", "senders", "associations", "single", "series", "large")
SMALL, LARGE = 128, 500  # pixel sides: ~39 KB and ~500 KB files


@dataclass
class Outcome:
    """One send through the stack: what was sent and when each milestone was reached."""

    instances: int
    send: float
    started: float
    released: float
    reached: dict[str, float]
    cpu: float
    steps: dict[str, float] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    load: str = ""
    cpu_parts: dict[str, float] = field(default_factory=dict)

    def since_start(self, milestone: str) -> float:
        """Seconds from the first byte sent to ``milestone`` of the last series."""
        return self.reached[milestone] - self.started

    def since_release(self, milestone: str) -> float:
        """Seconds from the end of sending to ``milestone`` of the last series."""
        return self.reached[milestone] - self.released


class Table:
    """The rows printed at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str, str]] = []

    def add(
        self,
        scenario: str,
        measure: str,
        ours: float | int | str,
        reference: float | str = "-",
        ratio: float | str = "-",
        goal: str = "-",
    ) -> None:
        def cell(value: float | int | str) -> str:
            if isinstance(value, float):
                return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
            return str(value)

        self.rows.append((scenario, measure, cell(ours), cell(reference), cell(ratio), goal))

    def print(self) -> None:
        header = ("scenario", "measure", "ours", "reference", "ratio", "goal")
        widths = [max(len(r[i]) for r in [header, *self.rows]) for i in range(6)]
        for row in [header, *self.rows]:
            print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


class Bench:
    """A stack of its own and the scenarios sent through it."""

    def __init__(self, settings: Settings, work: Path, wait: float) -> None:
        self.settings = settings
        self.work = work
        self.wait = wait
        self.projects = ProjectStore(make_engine(settings.platform_db_url))
        self._cpu = StackCpu(settings)
        self._parts = ComponentCpu(settings)

    def through(
        self, project: str, folder: Path, send: Callable[[], float], *, sample: int | None = None
    ) -> Outcome:
        """Send with ``send`` to project ``project``; follow the files of ``folder``."""
        self.projects.create_project(project)
        expected = expected_of(folder, sample)
        self._cpu.settle()
        before = load()
        self._cpu.start()
        self._parts.start()
        started = time.monotonic()
        took = send()
        released = time.monotonic()
        seen = watch(self.settings, project, expected, self.wait, started)
        cpu = self._cpu.spent()
        parts = self._parts.spent(cpu)
        if seen.short:
            # The other scenarios' rows still count: print this one's as not reached (nan).
            print(
                f"{project}: not reached within --wait {self.wait:.0f} s, series short of each "
                f"milestone: {seen.short}",
                file=sys.stderr,
                flush=True,
            )
            for name in seen.short:
                seen.reached[name] = float("nan")
        steps, runs, batches = step_times(self.settings, project)
        outcome = Outcome(
            instances=sum(n for n, _ in expected.values()),
            send=took,
            started=started,
            released=released,
            reached=seen.reached,
            cpu=cpu,
            steps=steps,
            runs=runs,
            batches=batches,
            load=f"{before} -> {load()}",
            cpu_parts=parts,
        )
        # As it comes, so that a run stopped later still leaves this scenario's figures.
        print(
            f"{project}: {outcome.instances} instances, sent in {took:.1f} s; from release: "
            + ", ".join(f"{m} {outcome.since_release(m):.1f} s" for m in seen.reached)
            + f"; CPU {cpu:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        return outcome

    def one_association(self, project: str, folder: Path) -> Outcome:
        port = self.settings.receiver.port
        return self.through(project, folder, lambda: dcmsend(port, folder, "MODALITY", project))


def latencies(table: Table, name: str, out: Outcome) -> None:
    """The milestone rows of one scenario, from the end of sending."""
    table.add(name, "release -> last series searchable (s)", out.since_release("searchable"))
    table.add(name, "release -> last series stored, pacs_state (s)", out.since_release("stored"))
    table.add(
        name,
        "release -> last series complete: representative validation (s)",
        out.since_release("complete"),
    )
    table.add(name, "release -> every instance validated (s)", out.since_release("validated"))


def end_to_end(table: Table, name: str, out: Outcome, ref: Reference, goal: str = "-") -> None:
    """End-to-end rate to complete against Orthanc alone; CPU per instance against it."""
    ours = out.instances / out.since_start("complete")
    theirs = out.instances / ref.seconds
    table.add(name, "first byte -> all complete (inst/s)", ours, theirs, ours / theirs, goal)
    cpu_ours, cpu_ref = out.cpu / out.instances * 1000, ref.cpu / out.instances * 1000
    table.add(
        name, "CPU ms per instance (stack / Orthanc alone)", cpu_ours, cpu_ref, cpu_ours / cpu_ref
    )


def receive(table: Table, name: str, out: Outcome, ref: Reference) -> None:
    ours, theirs = out.instances / out.send, out.instances / ref.seconds
    table.add(name, "receive rate, one dcmsend (inst/s)", ours, theirs, ours / theirs)


def runs_and_steps(table: Table, name: str, out: Outcome) -> None:
    table.add(
        name,
        f"batches / runs (load {out.load})",
        f"{out.batches} / "
        + ", ".join(f"{n} {dag.removeprefix('service-')}" for dag, n in out.runs.items()),
    )
    for task, seconds in sorted(out.steps.items(), key=lambda kv: -kv[1]):
        table.add(name, f"  task {task.removeprefix('service-')} (s, summed)", seconds)
    for part, seconds in out.cpu_parts.items():
        # Where the stack's CPU went; the smallest parts are left out.
        if seconds >= 0.03 * out.cpu:
            table.add(name, f"  CPU ms per instance: {part}", seconds / out.instances * 1000)


_T0 = time.monotonic()


def progress(what: str) -> None:
    """A line on standard error: what starts now, when, and the load."""
    print(f"{time.monotonic() - _T0:6.0f} s  {what} (load {load()})", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--instances", type=int, default=2000, help="one, senders: instances")
    parser.add_argument("--series", type=int, default=20, help="one, senders: series")
    parser.add_argument("--senders", default="20,50", help="senders: sender counts")
    parser.add_argument("--associations", type=int, default=100, help="associations: instances")
    parser.add_argument("--single", type=int, default=300, help="single: series of one")
    parser.add_argument("--series-size", type=int, default=5000, help="series: its instances")
    parser.add_argument("--large", type=int, default=200, help="large: 500 KB instances")
    parser.add_argument(
        "--dciodvfy-files", type=int, default=100, help="files for the plain dciodvfy rate"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION__KEY=VALUE",
        help="a setting of the stack, e.g. pacs__protocol=dimse (repeatable)",
    )
    parser.add_argument(
        "--wait", type=float, default=900.0, help="seconds a scenario may take before giving up"
    )
    args = parse_args(
        parser,
        {
            "instances": 6,
            "series": 2,
            "senders": "2",
            "associations": 2,
            "single": 3,
            "series_size": 6,
            "large": 2,
            "dciodvfy_files": 3,
            "wait": 150.0,
            # The shortest run that still takes both ways of sending (one dcmsend, one storescu
            # per file): a whole stack's start plus a DAG run per scenario. The other scenarios
            # send as these do, more at once or larger (senders: dcmsend in parallel). Measured
            # under load 18: stack up 117 s, one 50 s, each association's run 40 s.
            "scenarios": "one,associations",
        },
    )
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"--scenarios: unknown {', '.join(unknown)}; choose from {SCENARIOS}")
    if "senders" in chosen and "one" not in chosen:
        chosen.insert(0, "one")  # the senders' reference
    senders = [int(n) for n in args.senders.split(",") if n.strip()]
    overrides = dict(kv.split("=", 1) for kv in args.set)
    if overrides.get("pacs__protocol") == "dimse" and "pacs__dicom_port" not in overrides:
        from dicomflow.stack.isolated import free_port

        overrides["pacs__dicom_port"] = str(free_port())
    table = Table()
    with scratch() as work:
        settings = bench_settings(**overrides)
        files: dict[str, Path] = {}
        progress("making files")
        if "one" in chosen:
            make_instances(
                files.setdefault("one", work / "one"),
                args.series,
                args.instances // args.series,
                side=SMALL,
            )
        for n in senders if "senders" in chosen else []:
            folder = files.setdefault(f"senders{n}", work / f"senders{n}")
            make_instances(folder, args.series, args.instances // args.series, side=SMALL)
            for k, path in enumerate(files_of(folder)):
                # Contiguous shares: sender k sends the k-th part (a series may span two).
                part = folder / f"part{k * n // args.instances:03d}"
                part.mkdir(exist_ok=True)
                path.rename(part / path.name)
        if "associations" in chosen:
            make_instances(files.setdefault("assoc-one", work / "assoc-one"), 1, args.associations)
            make_instances(
                files.setdefault("assoc-each", work / "assoc-each"), 1, args.associations
            )
        if "single" in chosen:
            make_instances(files.setdefault("single", work / "single"), args.single, 1, side=SMALL)
        if "series" in chosen:
            make_instances(
                files.setdefault("series", work / "series"), 1, args.series_size, side=SMALL
            )
        if "large" in chosen:
            make_instances(files.setdefault("large", work / "large"), 1, args.large, side=LARGE)

        progress("references")
        alone: dict[str, Reference] = {}
        scp: dict[str, Reference] = {}
        for key in ("one", "single", "series", "large"):
            if key in files:
                alone[key] = orthanc_alone(files[key], work)
                scp[key] = storescp_alone(files[key], work)
        if "associations" in chosen:
            # The sender's own cost: a storescu process per file, whoever receives.
            alone["assoc-each"] = orthanc_alone(
                files["assoc-each"],
                work,
                send=lambda port, folder: storescu_each(port, files_of(folder), "ORTHANC"),
            )
        dciodvfy_rate = 0.0
        if "one" in files:
            dciodvfy_rate = plain_dciodvfy_rate(files_of(files["one"])[: args.dciodvfy_files])

        stack = Stack(settings)
        outcomes: dict[str, Outcome] = {}
        try:
            progress("stack up")
            stack.up(report=lambda _m: None)
            warm_up(settings, work, args.wait)
            bench = Bench(settings, work, args.wait)
            port = settings.receiver.port
            for key in ("one", "single", "series", "large"):
                if key in files:
                    progress(key)
                    outcomes[key] = bench.one_association(key, files[key])
            for n in senders if "senders" in chosen else []:
                key = f"senders{n}"
                parts = sorted(p for p in files[key].iterdir() if p.is_dir())
                progress(key)
                outcomes[key] = bench.through(
                    key,
                    files[key],
                    lambda parts=parts, key=key: dcmsend_parallel(port, parts, key),
                )
            if "associations" in chosen:
                progress("associations")
                outcomes["assoc-one"] = bench.one_association("assoc-one", files["assoc-one"])
                each = files_of(files["assoc-each"])
                outcomes["assoc-each"] = bench.through(
                    "assoc-each",
                    files["assoc-each"],
                    lambda: storescu_each(port, each, "assoc-each"),
                )
        finally:
            stack.down(report=lambda _m: None)
            shutil.rmtree(settings.data_dir, ignore_errors=True)

    workers = min(settings.validation.workers, os.cpu_count() or 1)
    for key, name in (
        ("one", f"one association, {args.instances} x 39 KB, {args.series} series"),
        ("single", f"{args.single} single-instance series, one association"),
        ("series", f"one {args.series_size}-instance series"),
        ("large", f"{args.large} x 500 KB, one association"),
    ):
        if key not in outcomes:
            continue
        out = outcomes[key]
        goal = {"one": ">= 0.6", "single": ">= 0.4"}.get(key, "-")
        receive(table, name, out, scp[key])
        end_to_end(table, name, out, alone[key], goal)
        latencies(table, name, out)
        if key == "one":
            total, complete = out.since_start("validated"), out.since_start("complete")
            table.add(
                name,
                "first byte -> every instance validated, against -> all complete (s)",
                total,
                complete,
                total / complete,
                "<= 2",
            )
            lane = out.steps.get(f"{VALIDATION_DAG_ID}: validate_the_rest", 0.0)
            rest = out.instances - representative_count(files["one"])
            if lane and rest:
                ours = rest / lane / workers
                table.add(
                    name,
                    f"background lane, inst/s per core ({workers} workers) / plain dciodvfy",
                    ours,
                    dciodvfy_rate,
                    ours / dciodvfy_rate,
                    ">= 1.3",
                )
        runs_and_steps(table, name, out)
    if "one" in outcomes:
        base = outcomes["one"].since_start("complete")
        for n in senders if "senders" in chosen else []:
            out = outcomes[f"senders{n}"]
            name = f"{n} senders at once, {args.instances} x 39 KB"
            took = out.since_start("complete")
            table.add(
                name,
                "first byte -> all complete (s) / one association",
                took,
                base,
                took / base,
                "<= 1.25",
            )
            table.add(name, "all acknowledged (s)", out.send)
            latencies(table, name, out)
            table.add(name, "CPU ms per instance (stack)", out.cpu / out.instances * 1000)
            runs_and_steps(table, name, out)
    if "assoc-each" in outcomes:
        one, many = outcomes["assoc-one"], outcomes["assoc-each"]
        name = f"{args.associations} instances, one association each (storescu per file)"
        took, base = many.since_start("complete"), one.since_start("complete")
        table.add(
            name,
            "first byte -> all complete (s) / one association",
            took,
            base,
            took / base,
            "<= 1.5",
        )
        table.add(name, "sending (s) / one association", many.send, one.send, many.send / one.send)
        orthanc = alone["assoc-each"].seconds
        table.add(
            name,
            "first byte -> all complete (s) / Orthanc alone taking the same associations",
            took,
            orthanc,
            took / orthanc,
        )
        after, once = many.since_release("complete"), one.since_release("complete")
        table.add(
            name,
            "last association's release -> all complete (s) / one association's",
            after,
            once,
            after / once,
        )
        latencies(table, name, many)
        table.add(
            name,
            "CPU ms per instance (stack)",
            many.cpu / many.instances * 1000,
            one.cpu / one.instances * 1000,
            many.cpu / one.cpu,
        )
        runs_and_steps(table, name, many)
    table.print()


if __name__ == "__main__":
    main()
