"""One simulation on more than one core: the scenario's cases split into independent shards,
each run by its own process through the same pipeline, the reports joined into one.

A run in one process is bound to one core by the interpreter's lock, however many threads it
has. Cases that share nothing on either side do not affect one another, so a scenario splits
into groups of cases connected by what they share — a member (request coalescing), a provider,
an NPI, a fax number, a retrieval vendor, an agency's fax line — and the groups are dealt to
``processes`` shards. Each shard is :func:`simulator.driver.run_simulation` with the in-process
executor in a process of its own (started fresh, not forked from this one's threads): its own
SQLite database, object store, virtual clock, API and far side, on the scenario's time grid.
The joined report is what one process would have reported; ``tests/e2e/test_shards.py``
checks that case by case.

A scenario whose far side behaves by shares drawn across the whole run (lost, duplicated or
throttled webhooks) is not split: which callback is lost depends on the order of every case's
callbacks, so it runs as one shard.
"""

from __future__ import annotations

import os
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from simulator.driver import SIM_FAX_VENDORS, Progress, SimulationResult, run_simulation
from simulator.scenario import Scenario

__all__ = [
    "MAX_DEFAULT_PROCESSES",
    "ShardError",
    "ShardFigures",
    "ShardedResult",
    "cpu_seconds",
    "default_processes",
    "join_reports",
    "reap_document_checks",
    "run_sharded",
    "split_scenario",
]


class ShardError(RuntimeError):
    """A shard's process failed; the message carries its traceback."""


@dataclass(frozen=True)
class ShardFigures:
    """What one shard's process measured: wall seconds, driver steps, CPU seconds of its own
    (``cpu_s``) and of its document checks (``checks_cpu_s``), and its peak resident memory
    in MB."""

    cases: int
    wall_s: float
    steps: int
    cpu_s: float
    checks_cpu_s: float
    peak_rss_mb: float


@dataclass
class ShardedResult(SimulationResult):
    """A :class:`SimulationResult` joined from shards; ``shards`` holds each one's figures.
    ``steps`` is the sum of the shards' driver steps."""

    shards: list[ShardFigures] | None = None

    @property
    def peak_rss_mb(self) -> float:
        """The shards' peak resident memory added up (MB): an upper bound of the run's own."""
        return sum(s.peak_rss_mb for s in self.shards or [])


# --- splitting --------------------------------------------------------------------------------


def _keys(notification: Any) -> list[str]:
    """What ``notification`` shares with others if they name it too (see module docstring)."""
    if not isinstance(notification, dict):
        return []
    keys = []
    insured = notification.get("insured")
    if isinstance(insured, dict) and insured.get("member_id"):
        keys.append(f"member:{insured['member_id']}")
    if notification.get("agency_id"):
        keys.append(f"agency:{notification['agency_id']}")
    for p in notification.get("providers") or []:
        if not isinstance(p, dict):
            continue
        for field_ in ("provider_id", "npi"):
            if p.get(field_):
                keys.append(f"{field_}:{p[field_]}")
        found = p.get("designee")
        designee: dict[str, Any] = found if isinstance(found, dict) else {}
        if designee.get("vendor_id"):
            keys.append(f"vendor:{designee['vendor_id']}")
        for ch in list(p.get("channels") or []) + list(designee.get("channels") or []):
            if not isinstance(ch, dict):
                continue
            if ch.get("number"):
                keys.append(f"fax:{ch['number']}")
            if ch.get("vendor_id"):
                keys.append(f"vendor:{ch['vendor_id']}")
    return keys


def _groups(scenario: Scenario) -> list[list[int]]:
    """The scenario's notifications (by index) in groups that share nothing with each other,
    in order of each group's first notification."""
    shared_agencies = {
        aid
        for aid, b in scenario.agencies.items()
        if b.transport == "fax" or b.fallback_fax_number  # one fax line, busy for everyone
    }
    parent = list(range(len(scenario.notifications)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, n in enumerate(scenario.notifications):
        for key in _keys(n):
            if key.startswith("agency:") and key[len("agency:") :] not in shared_agencies:
                continue  # an upload endpoint takes every packet alike
            j = owner.setdefault(key, i)
            if j != i:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(parent)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def split_scenario(scenario: Scenario, shards: int) -> list[Scenario]:
    """``scenario`` as at most ``shards`` scenarios of independent cases (fewer when it has
    fewer independent groups, one when its far side draws shares across the run). Groups are
    dealt in order of receipt, by size, so each shard gets its share of every day's arrivals;
    each keeps the scenario's start, end and provider behaviours."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    run_wide = scenario.drop_webhooks or scenario.duplicate_webhooks or scenario.throttle
    if shards == 1 or run_wide or len(scenario.notifications) < 2:
        return [scenario]
    groups = sorted(_groups(scenario), key=lambda g: _received(scenario, g[0]))
    buckets: list[list[int]] = [[] for _ in range(min(shards, len(groups)))]
    for g in groups:  # the least loaded bucket takes the next group
        min(buckets, key=len).extend(g)
    return [
        replace(scenario, notifications=[scenario.notifications[i] for i in sorted(b)])
        for b in buckets
    ]


def _received(scenario: Scenario, i: int) -> datetime:
    """When notification ``i`` arrives, as the driver reads it (``simulator/driver.py``
    ``_arrivals``): an instant, compared across UTC offsets; one without a readable, aware
    ``received_at`` arrives at the scenario's start."""
    n = scenario.notifications[i]
    try:
        at = datetime.fromisoformat(str(n["received_at"]))
    except (KeyError, ValueError, TypeError):
        return scenario.start
    return at if at.tzinfo is not None else scenario.start


# --- running ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    scenario: Scenario
    workdir: Path
    threads: int
    resolution_s: float
    fax_vendor: str
    log_level: str
    progress_interval_s: float | None  # wall seconds; None: no progress sent


def reap_document_checks(timeout_s: float = 5.0) -> None:
    """Stop the forkserver the document checks fork from, once its children are gone, and
    wait for it, so that RUSAGE_CHILDREN counts their CPU: the checking processes are the
    forkserver's children, not ours, and its CPU reaches us only when we wait for it."""
    import multiprocessing.forkserver as fs

    server = fs._forkserver  # private, but the only handle on it
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _children_of(pid):
        time.sleep(0.05)
    server._stop()  # type: ignore[attr-defined]  # private as well


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(who: int) -> float:
    """User and system CPU seconds of ``resource.RUSAGE_SELF`` or ``RUSAGE_CHILDREN``."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _shard_main(conn: Connection, job: _Job) -> None:
    """A shard's process: run its scenario, send back the report and its figures."""
    try:
        from config.logging import configure_logging

        configure_logging(job.log_level, "console")
        t0 = time.perf_counter()
        result = run_simulation(
            job.scenario,
            workdir=job.workdir,
            threads=job.threads,
            resolution_s=job.resolution_s,
            fax=SIM_FAX_VENDORS[job.fax_vendor],
            executor="inprocess",
            progress=None
            if job.progress_interval_s is None
            else (lambda p: conn.send(("progress", p))),
            progress_interval_s=job.progress_interval_s or 0.25,
        )
        wall = time.perf_counter() - t0
        reap_document_checks()
        figures = ShardFigures(
            cases=len(job.scenario.notifications),
            wall_s=wall,
            steps=result.steps,
            cpu_s=cpu_seconds(resource.RUSAGE_SELF),
            checks_cpu_s=cpu_seconds(resource.RUSAGE_CHILDREN),
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
        conn.send(("ok", result.report, result.steps, result.submissions, figures))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_sharded(
    scenario: Scenario,
    *,
    processes: int,
    workdir: Path,
    threads: int = 8,
    resolution_s: float = 60.0,
    fax_vendor: str = "telnyx",
    log_level: str = "WARNING",
    progress: Callable[[Progress], None] | None = None,
    progress_interval_s: float = 0.25,
) -> ShardedResult:
    """Run ``scenario`` split over ``processes`` processes (see module docstring); each shard's
    state goes under ``workdir/shard-<k>``. ``threads`` run the handlers in each process;
    ``resolution_s`` (virtual seconds) and ``fax_vendor`` (a key of ``SIM_FAX_VENDORS``) as in
    :func:`run_simulation`. ``progress`` is called with the shards' progress added up (their
    counts summed, the virtual time of the one furthest behind) as each shard reports, every
    ``progress_interval_s`` wall seconds. Raises :class:`ShardError` when a shard fails (the
    others are stopped)."""
    if fax_vendor not in SIM_FAX_VENDORS:
        raise ValueError(f"fax_vendor must be one of {sorted(SIM_FAX_VENDORS)}")
    t0 = time.monotonic()
    parts = split_scenario(scenario, processes)
    ctx = get_context("spawn")  # not fork: this process may already run threads
    running = []
    for k, part in enumerate(parts):
        here, there = ctx.Pipe(duplex=False)
        job = _Job(
            part,
            workdir / f"shard-{k}",
            threads,
            resolution_s,
            fax_vendor,
            log_level,
            None if progress is None else progress_interval_s,
        )
        proc = ctx.Process(target=_shard_main, args=(there, job), name=f"goodfaith-shard-{k}")
        proc.start()
        there.close()
        running.append((here, proc))
    answers: dict[int, tuple[Any, ...]] = {}
    latest: dict[int, Progress] = {}
    try:
        while len(answers) < len(running):
            ready = wait([c for k, (c, _) in enumerate(running) if k not in answers])
            for k, (conn, proc) in enumerate(running):
                if conn not in ready:
                    continue
                try:
                    answer: tuple[Any, ...] = conn.recv()
                except EOFError:
                    raise ShardError(
                        f"shard {k} ended without a result (exit code {proc.exitcode})"
                    ) from None
                if answer[0] == "progress":
                    latest[k] = answer[1]
                    if progress is not None:
                        progress(_added_up(list(latest.values()), time.monotonic() - t0))
                    continue
                if answer[0] != "ok":
                    raise ShardError(f"shard {k} failed:\n{answer[1]}")
                answers[k] = answer
    finally:
        for conn, proc in running:
            if proc.is_alive() and len(answers) < len(running):
                proc.terminate()
            proc.join()
            conn.close()
    ordered = [answers[k] for k in range(len(running))]
    report = join_reports([a[1] for a in ordered], scenario)
    report["summary"]["wall_seconds"] = round(time.monotonic() - t0, 2)
    return ShardedResult(
        report,
        workdir,
        time.monotonic() - t0,
        sum(a[2] for a in ordered),
        sum(a[3] for a in ordered),
        shards=[a[4] for a in ordered],
    )


def _added_up(shards: list[Progress], wall_s: float) -> Progress:
    """One progress of the shards': counts summed, the virtual time of the one furthest behind,
    ``wall_s`` the run's wall seconds so far."""
    statuses: dict[str, int] = {}
    for p in shards:
        for status, n in p.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return Progress(
        min(p.now for p in shards),
        sum(p.cases for p in shards),
        sum(p.delivered for p in shards),
        sum(p.on_time for p in shards),
        sum(p.attempts for p in shards),
        sum(p.documents for p in shards),
        sum(p.steps for p in shards),
        wall_s,
        statuses,
    )


def join_reports(reports: list[dict[str, Any]], scenario: Scenario) -> dict[str, Any]:
    """The shards' reports as one: cases in order of receipt (then notification id), the
    summary's counts added, the latest ``virtual_until``."""
    cases = sorted(
        (case for r in reports for case in r["cases"]),
        key=lambda c: (datetime.fromisoformat(c["received_at"]), c["notification_id"]),
    )
    summary: dict[str, Any] = {
        key: sum(r["summary"][key] for r in reports)
        for key in ("cases", "on_time", "late", "attempts", "cases_with_warnings")
    }
    summary["virtual_until"] = max(
        (r["summary"]["virtual_until"] for r in reports), key=datetime.fromisoformat
    )
    joined: dict[str, Any] = {"cases": cases, "summary": summary}
    for key in ("intake_errors", "agency_faxes"):
        items = [x for r in reports for x in r.get(key, [])]
        if items:
            joined[key] = items
    if scenario.warnings:
        joined["scenario_warnings"] = list(scenario.warnings)
    return joined


#: the most processes :func:`default_processes` proposes: each shard holds its own servers,
#: database and checking processes (~200 MB before its cases), and a split finer than this
#: gains little on a benchmark's 1,000 cases
MAX_DEFAULT_PROCESSES = 8


def default_processes() -> int:
    """One process per core this process may run on, at most :data:`MAX_DEFAULT_PROCESSES`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_DEFAULT_PROCESSES))
