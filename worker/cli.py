"""``goodfaith``: the command line.

goodfaith demo [--cases 12] [--json out.json]   the whole pipeline on embedded defaults
goodfaith simulate SCENARIO.json --json R.json  the same on a scenario, in virtual time
goodfaith intake FILE.json                      open a case from a notification
goodfaith worker | scheduler | api | simulator  the production processes
goodfaith export attempts [--case ID] --format csv|json
goodfaith export attestation --case ID [--format pdf|json] [-o FILE]
goodfaith dead-letters list [--all] | retry ID
goodfaith review list | release ID --by NAME | reject ID --by NAME [--note TEXT]
goodfaith packet show CASE [--sequence N] | get CASE --out FILE
goodfaith deadline --jurisdiction MA --review standard --received ISO-8601
goodfaith db upgrade
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from config.logging import configure_logging
from config.settings import get_settings


@click.group()
def main() -> None:
    """goodfaith: records for external review, chased in good faith and delivered on time."""


@main.command()
@click.option("--cases", default=12, show_default=True, type=click.IntRange(1, 5000))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write the report here")
@click.option(
    "--workdir", type=click.Path(file_okay=False), help="run folder (default ./var/runs/<time>)"
)
@click.option("--quiet", is_flag=True, help="no progress view")
def demo(cases: int, json_path: str | None, workdir: str | None, quiet: bool) -> None:
    """Run sample notifications end to end against simulated providers and agencies."""
    from simulator.console import run_and_show
    from simulator.demo import demo_scenario

    configure_logging("WARNING", "console")
    folder = (
        Path(workdir) if workdir else Path("var/runs") / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    )
    sys.exit(run_and_show(demo_scenario(cases), json_path, folder.resolve(), quiet))


@main.command()
@click.argument("scenario_path", type=click.Path(dir_okay=False))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write the report here")
@click.option("--workdir", type=click.Path(file_okay=False))
@click.option("--quiet", is_flag=True)
def simulate(scenario_path: str, json_path: str | None, workdir: str | None, quiet: bool) -> None:
    """Run SCENARIO_PATH through the real pipeline on a virtual clock."""
    from simulator.console import run_and_show
    from simulator.scenario import ScenarioError, load_scenario

    configure_logging("WARNING", "console")
    try:
        scenario = load_scenario(Path(scenario_path))
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in scenario.warnings:
        click.echo(f"warning: {warning}", err=True)
    folder = (
        Path(workdir) if workdir else Path("var/runs") / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    )
    code = run_and_show(scenario, json_path, folder.resolve(), quiet)
    sys.exit(0 if json_path or code == 0 else code)


def _container(**kwargs: Any) -> Any:
    from worker.wiring import build_container

    return build_container(get_settings(), **kwargs)


def _broker_dispatcher() -> Any:
    from worker.actors import register_actors
    from worker.entrypoint import broker

    return register_actors(broker)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def intake(file: str) -> None:
    """Open a case from the notification in FILE (JSON; - for stdin)."""
    from worker.notification import IntakeError
    from worker.services import intake as do_intake

    s = get_settings()
    configure_logging(s.log_level, s.log_format)
    text = sys.stdin.read() if file == "-" else Path(file).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{file}: not valid JSON ({exc})") from None
    from worker.notification import parse_notification

    try:
        parse_notification(data)  # fail fast before touching the broker
    except IntakeError as exc:
        for field, msg in exc.errors:
            click.echo(f"error: {field}: {msg}", err=True)
        sys.exit(2)
    c = _container(dispatcher=_broker_dispatcher())
    try:
        result = do_intake(c, data)
    except IntakeError as exc:
        for field, msg in exc.errors:
            click.echo(f"error: {field}: {msg}", err=True)
        sys.exit(2)
    finally:
        c.close()
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    out: dict[str, Any] = {"case_id": result.case_id, "created": result.created}
    if result.warnings:
        out["warnings"] = result.warnings
    click.echo(json.dumps(out))


@main.command()
@click.option("--processes", "-p", type=int, default=None, help="worker processes")
@click.option("--threads", "-t", type=int, default=None, help="threads per process")
@click.option(
    "--lanes",
    default="expedited,standard,bulk",
    show_default=True,
    help="the lanes these processes work, comma-separated. Run one worker per lane to give "
    "each its own capacity, e.g. `--lanes expedited -p 1 -t 4` beside `--lanes standard,bulk`: "
    "expedited reviews then never wait behind a standard backlog.",
)
@click.option(
    "--worker-timeout",
    type=click.IntRange(10, 10_000),
    default=None,
    help="milliseconds an idle queue waits between polls (dramatiq's default: 1000); "
    "100 for a mostly idle lane that must start work at once, e.g. expedited",
)
def worker(
    processes: int | None, threads: int | None, lanes: str, worker_timeout: int | None
) -> None:
    """Run the dramatiq workers (production) for the lanes named (default: every lane)."""
    import os

    if worker_timeout:  # dramatiq reads it from the environment when dramatiq.worker is imported
        os.environ["dramatiq_worker_timeout"] = str(worker_timeout)  # noqa: SIM112 (its spelling)
    from dramatiq.cli import main as dramatiq_main

    from worker.actors import lane_queues
    from worker.domain.lanes import parse_lanes

    try:
        chosen = parse_lanes(lanes)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lanes") from None
    s = get_settings()
    sys.argv = [
        "dramatiq",
        "worker.entrypoint",
        "--processes",
        str(processes or s.worker_processes),
        "--threads",
        str(threads or s.worker_threads),
        "--queues",
        *lane_queues(chosen),
    ]
    sys.exit(dramatiq_main())  # type: ignore[no-untyped-call]


@main.command()
@click.option("--once", is_flag=True, help="one tick, then exit")
def scheduler(once: bool) -> None:
    """Enqueue due work from the database every GOODFAITH_SCHEDULER_INTERVAL_S seconds."""
    import redis

    from worker.scheduler import HEARTBEAT_KEY, run_loop

    s = get_settings()
    configure_logging(s.log_level, s.log_format)
    c = _container(dispatcher=_broker_dispatcher())
    beats = redis.Redis.from_url(s.redis_url) if s.redis_url else None

    def beat(instant: datetime) -> None:
        if beats is not None:
            value = {"tick_at": instant.isoformat(), "wall": round(time.time(), 3)}
            beats.set(HEARTBEAT_KEY, json.dumps(value))

    try:
        run_loop(c, s.scheduler_interval_s, beat=beat, once=once)
    finally:
        c.close()
        if beats is not None:
            beats.close()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def api(host: str, port: int) -> None:
    """Serve the HTTP API (intake, webhooks, dashboards, exports)."""
    import uvicorn

    from api.app import create_app

    s = get_settings()
    configure_logging(s.log_level, s.log_format)
    c = _container(dispatcher=_broker_dispatcher())
    uvicorn.run(create_app(lambda: c), host=host, port=port, log_level="warning")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, show_default=True, type=int)
@click.option("--webhook-url", default=None, help="our API's fax webhook URL")
@click.option("--public-url", default=None, help="where this simulator is reachable")
@click.option(
    "--drop-webhooks",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="share of outbound fax status webhooks to lose (exercises status checks)",
)
def simulator(
    host: str, port: int, webhook_url: str | None, public_url: str | None, drop_webhooks: float
) -> None:
    """Serve the simulated far side (fax carrier, FHIR servers, agencies) in real time."""
    import uvicorn

    from connectors.registry import webhook_url as vendor_webhook_url
    from simulator.app import Simulator
    from worker.domain.clock import SystemClock
    from worker.wiring import make_http_client

    s = get_settings()
    configure_logging(s.log_level, s.log_format)
    sim = Simulator(
        clock=SystemClock(),
        webhook_url=webhook_url or vendor_webhook_url(s.public_base_url, s.fax.vendor),
        behaviours={},
        directory={},
        http=make_http_client(),
        public_base_url=public_url or f"http://{host}:{port}",
        carrier_fax_number=s.fax.from_number,
        drop_webhooks=drop_webhooks,
    )
    sim.start_background(1.0)
    uvicorn.run(sim.app, host=host, port=port, log_level="warning")


@main.group()
def export() -> None:
    """Compliance exports."""


@export.command("attempts")
@click.option("--case", "case_id", default=None, help="only this case id")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None)
def export_attempts_cmd(case_id: str | None, fmt: str, output: str | None) -> None:
    """Every documented attempt: case, provider, number, time, channel, destination, outcome.

    Streams rows from the database; with ``--output`` the file appears whole or not at all."""
    import os
    import tempfile

    from worker.readmodels.export import iter_attempts, render_chunks

    c = _container()
    try:
        chunks = render_chunks(iter_attempts(c, case_id), fmt)
        if not output:
            for chunk in chunks:
                click.echo(chunk, nl=False)
            return
        target = Path(output)
        fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.writelines(chunks)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        c.close()


@export.command("attestation")
@click.option("--case", "case_id", required=True, help="the case id")
@click.option(
    "--format", "fmt", type=click.Choice(["pdf", "json"]), default="pdf", show_default=True
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None)
def export_attestation_cmd(case_id: str, fmt: str, output: str | None) -> None:
    """One case's good-faith attestation, standalone: PDF (default: CASE.attestation.pdf) or
    JSON (default: stdout)."""
    from worker.readmodels.attestation import attestation_json, attestation_pdf, case_attestation

    c = _container()
    try:
        found = case_attestation(c, case_id)
    finally:
        c.close()
    if found is None:
        raise click.ClickException(f"no case {case_id!r}")
    if fmt == "json":
        text = json.dumps(attestation_json(found), indent=2) + "\n"
        if output:
            Path(output).write_text(text)
        else:
            click.echo(text, nl=False)
        return
    target = Path(output or f"{case_id}.attestation.pdf")
    target.write_bytes(attestation_pdf(found))
    click.echo(str(target))


@main.command()
@click.option("--jurisdiction", required=True)
@click.option("--review", "review_type", required=True, help="standard or expedited")
@click.option(
    "--received", required=True, help="ISO-8601 instant with offset, e.g. 2026-04-17T09:00:00-04:00"
)
def deadline(jurisdiction: str, review_type: str, received: str) -> None:
    """Print the legal due instant (ISO-8601 with offset) and nothing else."""
    from config.jurisdictions import UnknownJurisdiction, get_jurisdiction
    from worker.domain.deadlines import DeadlineError, due_at

    try:
        instant = datetime.fromisoformat(received.replace("Z", "+00:00"))
    except ValueError:
        raise click.ClickException(f"--received: not an ISO-8601 instant: {received!r}") from None
    try:
        j = get_jurisdiction(jurisdiction)
        click.echo(due_at(j, review_type, instant).isoformat())
    except UnknownJurisdiction as exc:
        raise click.ClickException(f"--jurisdiction: {str(exc).strip(chr(39) + chr(34))}") from None
    except DeadlineError as exc:
        option = "--received" if "aware" in str(exc) or "naive" in str(exc) else "--review"
        raise click.ClickException(f"{option}: {exc}") from None


@main.group("dead-letters")
def dead_letters_group() -> None:
    """Messages the workers gave up on after every retry: list them, retry one."""


@dead_letters_group.command("list")
@click.option("--all", "include_retried", is_flag=True, help="include those already retried")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(0, 500))
def dead_letters_list(include_retried: bool, limit: int) -> None:
    """Print the dead letters as JSON (open ones first, newest first)."""
    from worker.readmodels.deadletters import dead_letters

    c = _container()
    try:
        page = dead_letters(c, include_retried=include_retried, limit=limit)
    finally:
        c.close()
    click.echo(json.dumps(page, indent=2))


@dead_letters_group.command("retry")
@click.argument("letter_id")
def dead_letters_retry(letter_id: str) -> None:
    """Enqueue LETTER_ID's command again and mark it retried (audited)."""
    from worker.services import RetryOutcome, retry_dead_letter

    c = _container(dispatcher=_broker_dispatcher())
    try:
        outcome = retry_dead_letter(c, letter_id)
    finally:
        c.close()
    if outcome is RetryOutcome.UNKNOWN:
        raise click.ClickException(f"no dead letter {letter_id!r}: see goodfaith dead-letters list")
    if outcome is RetryOutcome.ALREADY_RETRIED:
        raise click.ClickException(f"dead letter {letter_id!r} was already retried")
    click.echo(json.dumps({"id": letter_id, "status": outcome.value}))


# --- packets (issue 10) -------------------------------------------------------------------------


def _packet_row(c: Any, case_id: str, sequence: int | None) -> Any:
    from sqlalchemy import select

    from storage.db import transaction
    from storage.models import Packet

    with transaction(c.sessions) as s:
        q = select(Packet).where(Packet.case_id == case_id).order_by(Packet.sequence)
        packets = list(s.scalars(q))
        if sequence is not None:
            packets = [p for p in packets if p.sequence == sequence]
        if not packets:
            raise click.ClickException(
                f"no packet for case {case_id!r}"
                + (f" with sequence {sequence}" if sequence is not None else "")
            )
        row = packets[-1] if sequence is None else packets[0]
        s.expunge(row)
        return row


@main.group()
def packet() -> None:
    """The packets sent for a case: the index, and the PDF itself."""


@packet.command("show")
@click.argument("case_id")
@click.option("--sequence", type=int, default=None, help="which packet (default: the latest)")
def packet_show(case_id: str, sequence: int | None) -> None:
    """Print the packet's index: every document with its page range and QA flags."""
    c = _container()
    try:
        row = _packet_row(c, case_id, sequence)
        manifest = json.loads(c.store.get(row.manifest_uri))
    finally:
        c.close()
    kind = "supplemental packet" if manifest.get("supplemental") else "packet"
    click.echo(
        f"{kind} {manifest['sequence']} of case {case_id}: {manifest['pages']} pages, "
        f"sha256 {manifest['packet_sha256']}"
    )
    cover = manifest["cover_pages"]
    click.echo(f"  {cover['first_page']}-{cover['last_page']}  cover and index")
    for part in manifest["parts"]:
        flags = ", ".join(part.get("flags") or [])
        if flags and part.get("unreviewed"):
            flags += ", unreviewed"
        click.echo(
            f"  {part['first_page']}-{part['last_page']}  {part['kind']}: {part['title']}"
            + (f"  [{flags}]" if flags else "")
        )
    attestation = manifest["attestation_pages"]
    click.echo(f"  {attestation['first_page']}-{attestation['last_page']}  good-faith attestation")
    for left_out in manifest.get("excluded") or []:
        click.echo(
            f"  not included: {left_out['kind']}: {left_out['title']} ({left_out['reason']})"
        )


@packet.command("get")
@click.argument("case_id")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="PDF to write")
@click.option("--sequence", type=int, default=None, help="which packet (default: the latest)")
def packet_get(case_id: str, out: str, sequence: int | None) -> None:
    """Write the packet PDF to OUT, checked against its recorded SHA-256."""
    import hashlib

    c = _container()
    try:
        row = _packet_row(c, case_id, sequence)
        data = c.store.get(row.uri)
    finally:
        c.close()
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise click.ClickException(f"stored packet for {case_id!r} does not match its SHA-256")
    Path(out).write_bytes(data)
    click.echo(
        json.dumps({"case_id": case_id, "path": out, "pages": row.pages, "sha256": row.sha256})
    )


# --- the ops review queue (issue 10) ------------------------------------------------------------


@main.group("review")
def review_group() -> None:
    """Flagged documents (repaired, blank pages, cloned, possible wrong patient) waiting for a
    person: list them, release one into the packet, or reject it."""


@review_group.command("list")
def review_list() -> None:
    """Print the documents waiting for review as JSON (the case due soonest first)."""
    from worker.services import review_queue

    c = _container()
    try:
        items = review_queue(c)
    finally:
        c.close()
    click.echo(
        json.dumps({"documents": [i.as_dict() for i in items], "count": len(items)}, indent=2)
    )


def _review(document_id: str, decision: str, reviewer: str, note: str) -> None:
    from worker.services import review_document
    from worker.services.review import Decision, ReviewOutcome

    chosen = Decision(decision)
    c = _container(dispatcher=_broker_dispatcher())
    try:
        outcome = review_document(c, document_id, chosen, reviewer, note)
    finally:
        c.close()
    if outcome is ReviewOutcome.UNKNOWN:
        raise click.ClickException(f"no document {document_id!r}: see goodfaith review list")
    if outcome is ReviewOutcome.NOT_PENDING:
        raise click.ClickException(f"document {document_id!r} is not waiting for review")
    click.echo(json.dumps({"document_id": document_id, "status": f"{chosen.value}d"}))


@review_group.command("release")
@click.argument("document_id")
@click.option("--by", "reviewer", required=True, help="who releases it (name or id, audited)")
@click.option("--note", default="", help="why (audited with the decision)")
def review_release(document_id: str, reviewer: str, note: str) -> None:
    """Release DOCUMENT_ID: it goes into the packet like any document (audited)."""
    _review(document_id, "release", reviewer, note)


@review_group.command("reject")
@click.argument("document_id")
@click.option("--by", "reviewer", required=True, help="who rejects it (name or id, audited)")
@click.option("--note", default="", help="why (kept as the quarantine reason)")
def review_reject(document_id: str, reviewer: str, note: str) -> None:
    """Reject DOCUMENT_ID: quarantined with the note, never sent (audited)."""
    _review(document_id, "reject", reviewer, note)


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (alembic upgrade head)."""
    from storage.db import make_engine, migrate

    engine = make_engine(get_settings().database_url)
    migrate(engine)
    engine.dispose()
    click.echo("database is at the newest migration")


if __name__ == "__main__":  # pragma: no cover
    main()
