"""What ``goodfaith demo`` and ``simulate`` print: a live progress view while the simulation
runs, then a table of cases (times local to each case's jurisdiction) and the summary."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.settings import get_settings


def _write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(target)


def _local(iso: str | None, tz: Any) -> str:
    if not iso:
        return "—"
    return datetime.fromisoformat(iso).astimezone(tz).strftime("%a %m-%d %H:%M")


def _short_path(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def run_and_show(
    scenario: Any,
    json_path: str | None,
    workdir: Path,
    quiet: bool,
    *,
    database_url: str | None = None,
    object_store: str | None = None,
    fax_vendor: str = "telnyx",
    broker: str = "redis",
    processes: int = 1,
) -> int:
    """Run ``scenario`` with a live progress view (rich on a terminal, plain lines otherwise),
    print the table of cases, write the JSON report; 0 when every case was on time. State goes
    to ``database_url`` / ``object_store`` when given, else into ``workdir``. ``fax_vendor``
    names the fax vendor of the run (simulator.driver.SIM_FAX_VENDORS); ``broker`` its message
    broker (``redis`` or ``rabbitmq``, at GOODFAITH_RABBITMQ_URL). ``processes`` above 1 splits
    the cases over that many processes (simulator/shards.py), each with its own state under
    ``workdir`` and no broker; it takes no ``database_url`` or ``object_store``."""
    if processes > 1 and (database_url or object_store):
        raise ValueError("a run split over processes keeps its state in its run folder")
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from config.jurisdictions import get_jurisdiction
    from simulator.driver import SIM_FAX_VENDORS, Progress, SimulationResult, run_simulation
    from simulator.shards import run_sharded

    err = Console(stderr=True)
    out = Console() if Console().is_terminal else Console(width=160)
    live: Live | None = None

    def view(p: Progress) -> Table:
        t = Table(
            title=f"goodfaith · virtual time {p.now.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
            show_header=True,
        )
        for col in ("cases", "delivered", "on time", "attempts", "documents", "steps", "wall s"):
            t.add_column(col, justify="right")
        t.add_row(
            str(p.cases),
            str(p.delivered),
            str(p.on_time),
            str(p.attempts),
            str(p.documents),
            str(p.steps),
            f"{p.wall_s:.1f}",
        )
        return t

    def progress(p: Progress) -> None:
        nonlocal live
        if quiet:
            return
        if not err.is_terminal:
            err.print(
                f"[{p.wall_s:6.1f}s] {p.now:%Y-%m-%d %H:%M}Z cases={p.cases} "
                f"delivered={p.delivered} attempts={p.attempts} documents={p.documents}",
                highlight=False,
            )
            return
        if live is None:
            live = Live(view(p), console=err, refresh_per_second=8)
            live.start()
        live.update(view(p))

    result: SimulationResult
    try:
        if processes > 1:
            result = run_sharded(
                scenario,
                processes=processes,
                workdir=workdir,
                fax_vendor=fax_vendor,
                progress=progress,
                progress_interval_s=0.25 if err.is_terminal else 2.0,
            )
        else:
            result = run_simulation(
                scenario,
                workdir=workdir,
                redis_url=get_settings().redis_url,
                broker="rabbitmq" if broker == "rabbitmq" else "redis",
                rabbitmq_url=get_settings().rabbitmq_url,
                database_url=database_url,
                object_store=object_store,
                progress=progress,
                progress_interval_s=0.25 if err.is_terminal else 2.0,
                fax=SIM_FAX_VENDORS[fax_vendor],
            )
    finally:
        if live is not None:
            live.stop()
    report = result.report
    _write_json(json_path, report)
    table = Table(title="External reviews: records packets (times local to the jurisdiction)")
    for col in (
        "notification",
        "review",
        "due",
        "delivered",
        "on time",
        "attempts",
        "pages",
        "packet",
    ):
        table.add_column(col, no_wrap=col != "packet", overflow="fold")
    for case in report["cases"]:
        tz = get_jurisdiction(case["jurisdiction"]).tz
        attempts = sum(len(r["attempts"]) for r in case["requests"])
        packet = case["packet"] or {}
        table.add_row(
            case["notification_id"],
            case["review_type"],
            _local(case["due_at"], tz),
            _local(case["delivered_at"], tz),
            "yes" if case["on_time"] else "NO",
            str(attempts),
            str(packet.get("pages", "—")),
            _short_path(packet.get("local_path") or packet.get("uri") or "—"),
        )
    out.print(table)
    s = report["summary"]
    out.print(
        f"{s['cases']} cases, {s['on_time']} on time, {s['late']} late, "
        f"{s['attempts']} attempts documented · {result.wall_s:.1f} s wall · "
        f"run folder {result.workdir}",
        highlight=False,
    )
    for e in report.get("intake_errors", []):
        err.print(f"intake error: {e}", highlight=False)
    for w in report.get("scenario_warnings", []):
        err.print(f"scenario warning: {w}", highlight=False)
    for case in report["cases"]:
        for w in case.get("warnings", []):
            err.print(f"warning: {case['notification_id']}: {w}", highlight=False)
    if json_path:
        out.print(f"report written to {json_path}", highlight=False)
    ok = s["on_time"] == s["cases"] and not report.get("intake_errors")
    return 0 if ok else 1
