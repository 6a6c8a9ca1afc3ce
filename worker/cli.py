"""``goodfaith``: the command line.

goodfaith demo [--cases 12] [--json out.json]   the whole pipeline on embedded defaults
goodfaith simulate SCENARIO.json --json R.json  the same on a scenario, in virtual time
goodfaith intake FILE.json                      open a case from a notification
goodfaith worker | scheduler | api | simulator  the production processes
goodfaith export attempts [--case ID] [--provider|--agency|--jurisdiction X] [--from|--to D]
                          [--mask-destination] --format csv|json [-o FILE]
goodfaith export attestation --case ID [--format pdf|json] [-o FILE]
goodfaith dead-letters list [--all] | retry ID
goodfaith inbox list | show ID [--out FILE] | assign ID REQUEST --by NAME
goodfaith review list | release ID --by NAME | reject ID --by NAME [--note TEXT]
goodfaith packet show CASE [--sequence N] | get CASE --out FILE
goodfaith deadline --jurisdiction MA --review standard --received ISO-8601
goodfaith db upgrade
goodfaith audit verify
goodfaith keys create --role intake|ops|compliance|admin [--name N] | list [--all] | revoke ID
goodfaith openapi [-o docs/openapi.json] [--check]   the API's OpenAPI document
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from config.logging import configure_logging
from config.settings import Settings, get_settings

# Exit codes (README, "Exit codes"): 0 done; 1 the command ran and failed (a late case, an
# unknown id, a broken audit chain); 2 bad arguments or input (click's usage errors too);
# 69 a service is unreachable (database); 78 configuration refused (a default or missing secret).
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_UNAVAILABLE = 69
EXIT_CONFIG = 78


def _fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    """One line on stderr, then exit with ``code``: no traceback for an operator's mistake."""
    click.echo(f"goodfaith: error: {message}", err=True)
    sys.exit(code)


def _require_secrets(settings: Settings, process: str) -> None:
    """Production processes refuse to start on a default or missing secret (one line naming
    each setting, exit 78); ``demo`` and ``simulate`` set their own."""
    from config.settings import secret_problems

    problems = secret_problems(settings)
    if problems:
        _fail(f"{process} refuses to start: " + "; ".join(problems), EXIT_CONFIG)


@click.group()
@click.version_option(package_name="goodfaith", prog_name="goodfaith")
def main() -> None:
    """goodfaith: records for external review, chased in good faith and delivered on time."""


@main.command()
@click.option("--cases", default=12, show_default=True, type=click.IntRange(1, 5000))
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write the report here")
@click.option(
    "--workdir", type=click.Path(file_okay=False), help="run folder (default ./var/runs/<time>)"
)
@click.option("--quiet", is_flag=True, help="no progress view")
@click.option(
    "--broker",
    type=click.Choice(["redis", "rabbitmq"]),
    default="redis",
    show_default=True,
    envvar="GOODFAITH_BROKER",
    help="the message broker of the run: a private Redis (or GOODFAITH_REDIS_URL), or RabbitMQ "
    "at GOODFAITH_RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672/)",
)
def demo(cases: int, json_path: str | None, workdir: str | None, quiet: bool, broker: str) -> None:
    """Run sample notifications end to end against simulated providers and agencies.

    The cases go to the configured database and object store (GOODFAITH_DATABASE_URL,
    GOODFAITH_OBJECT_STORE; by default ./var/goodfaith.db and ./var/objects), so `goodfaith
    export attempts` and `goodfaith api` show them afterwards; each run's notification ids
    are its own (DEMO-<time>-0001...), so the demo runs again and again."""
    from simulator.console import run_and_show
    from simulator.demo import demo_scenario

    configure_logging("WARNING", "console")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = Path(workdir) if workdir else Path("var/runs") / stamp
    s = get_settings()
    code = run_and_show(
        demo_scenario(cases, run=stamp),
        json_path,
        folder.resolve(),
        quiet,
        database_url=s.database_url,
        object_store=s.object_store,
        broker=broker,
    )
    click.echo(
        "see it again: goodfaith export attempts --format csv · or serve it: goodfaith keys "
        "create --role ops, then goodfaith api (with GOODFAITH_MEDIA_SECRET and "
        "GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY set) and GET /v1/cases with that key",
        err=True,
    )
    sys.exit(code)


@main.command()
@click.argument("scenario_path", type=click.Path())
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="write the report here")
@click.option("--workdir", type=click.Path(file_okay=False))
@click.option("--quiet", is_flag=True)
@click.option(
    "--fax-vendor",
    type=click.Choice(["telnyx", "sinch"]),
    default="telnyx",
    show_default=True,
    envvar="GOODFAITH_FAX__VENDOR",
    help="the fax vendor whose API the run's faxes go through (served by the simulator)",
)
@click.option(
    "--broker",
    type=click.Choice(["redis", "rabbitmq"]),
    default="redis",
    show_default=True,
    envvar="GOODFAITH_BROKER",
    help="the message broker of the run: a private Redis (or GOODFAITH_REDIS_URL), or RabbitMQ "
    "at GOODFAITH_RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672/)",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="split the scenario's independent cases over this many processes, one per core at "
    "most, for a faster run of many cases; each runs the handlers itself, with no broker, and "
    "keeps its database under the run folder",
)
def simulate(
    scenario_path: str,
    json_path: str | None,
    workdir: str | None,
    quiet: bool,
    fax_vendor: str,
    broker: str,
    processes: int,
) -> None:
    """Run SCENARIO_PATH through the real pipeline on a virtual clock."""
    from simulator.console import run_and_show
    from simulator.scenario import ScenarioError, parse_scenario

    configure_logging("WARNING", "console")
    if processes > 1 and broker == "rabbitmq":
        _fail("--processes runs each process's handlers without a broker: drop --broker rabbitmq")
    data = _read_json(scenario_path)
    try:
        scenario = parse_scenario(data, Path(scenario_path).resolve().parent)
    except ScenarioError as exc:
        _fail(str(exc))
    for warning in scenario.warnings:
        click.echo(f"warning: {warning}", err=True)
    folder = (
        Path(workdir) if workdir else Path("var/runs") / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    )
    code = run_and_show(
        scenario,
        json_path,
        folder.resolve(),
        quiet,
        fax_vendor=fax_vendor,
        broker=broker,
        processes=processes,
    )
    sys.exit(0 if json_path or code == 0 else code)


def _read_json(file: str) -> Any:
    """The JSON document in ``file`` (``-``: stdin). A missing, unreadable, binary or non-UTF-8
    file, or text that is not JSON, exits 2 with one line saying which."""
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except FileNotFoundError:
        _fail(f"{file}: no such file")
    except IsADirectoryError:
        _fail(f"{file}: is a folder, not a file")
    except OSError as exc:
        _fail(f"{file}: cannot be read ({exc.strerror or type(exc).__name__})")
    if b"\x00" in raw:
        _fail(f"{file}: a binary file, not JSON text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _fail(f"{file}: not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{file}: not valid JSON ({exc})")
    except RecursionError:
        _fail(f"{file}: JSON nested too deeply")


def _container(**kwargs: Any) -> Any:
    from worker.wiring import build_container

    return build_container(get_settings(), **kwargs)


def _broker_dispatcher() -> Any:
    from worker.actors import register_actors
    from worker.entrypoint import broker

    return register_actors(broker, prefix=get_settings().queue_prefix)


@main.command()
@click.argument("file", type=click.Path(allow_dash=True))
def intake(file: str) -> None:
    """Open a case from the notification in FILE (JSON; - for stdin)."""
    from worker.notification import IntakeError
    from worker.services import intake as do_intake

    s = get_settings()
    configure_logging(s.log_level, s.log_format)
    data = _read_json(file)
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
    if threads:  # the worker processes size their S3 pool (and warn on the database's) by it
        os.environ["GOODFAITH_WORKER_THREADS"] = str(threads)
        get_settings.cache_clear()
    s = get_settings()
    _require_secrets(s, "worker")
    sys.argv = [
        "dramatiq",
        "worker.entrypoint",
        "--processes",
        str(processes or s.worker_processes),
        "--threads",
        str(threads or s.worker_threads),
        "--queues",
        *lane_queues(chosen, s.queue_prefix),
    ]
    sys.exit(dramatiq_main())  # type: ignore[no-untyped-call]


@main.command()
@click.option("--once", is_flag=True, help="one tick, then exit")
def scheduler(once: bool) -> None:
    """Enqueue due work from the database every GOODFAITH_SCHEDULER_INTERVAL_S seconds."""
    import redis

    from worker.scheduler import HEARTBEAT_KEY, run_loop

    s = get_settings()
    _require_secrets(s, "scheduler")
    configure_logging(s.log_level, s.log_format)
    c = _container(dispatcher=_broker_dispatcher(), background_audit=True)
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
    _require_secrets(s, "api")
    configure_logging(s.log_level, s.log_format)
    c = _container(dispatcher=_broker_dispatcher(), background_audit=True)
    try:
        uvicorn.run(
            create_app(lambda: c, _queue_reader(s)), host=host, port=port, log_level="warning"
        )
    finally:  # its audit chainer chains what is pending before the process exits
        c.close()


@main.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="write it here (default: stdout)"
)
@click.option(
    "--check",
    is_flag=True,
    help="compare with --output instead of writing it: exit 1 when they differ",
)
def openapi(output: str | None, check: bool) -> None:
    """The API's OpenAPI document (JSON), as `goodfaith api` serves it at /openapi.json.

    `goodfaith openapi -o docs/openapi.json` refreshes the committed copy; needs no database,
    Redis or settings."""
    from api.app import create_app
    from api.contract import render

    def no_container() -> Any:
        raise RuntimeError("the OpenAPI document is built without a container")

    text = render(create_app(no_container).openapi())
    if check:
        if output is None:
            _fail("--check needs --output FILE (the committed document)")
        current = Path(output).read_text(encoding="utf-8") if Path(output).is_file() else ""
        if current != text:
            click.echo(
                f"{output} differs from the served OpenAPI document: "
                f"run `goodfaith openapi -o {output}` and commit it",
                err=True,
            )
            sys.exit(EXIT_FAILED)
        click.echo(f"{output} matches the served OpenAPI document")
        return
    if output is None:
        click.echo(text, nl=False)
        return
    Path(output).write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}", err=True)


def _queue_reader(s: Settings) -> Any:
    """Reads the lanes' queue health for /metrics: from dramatiq's Redis keys (namespace
    ``dramatiq``, the broker's default), or from RabbitMQ's queue counters; None without a
    broker URL."""
    from worker.actors import lane_queues
    from worker.domain.lanes import Lane
    from worker.readmodels.queues import QueueHealth, queue_health, rabbitmq_queue_health

    queues = lane_queues(list(Lane), s.queue_prefix)
    if s.broker == "rabbitmq":
        url = s.rabbitmq_url or "amqp://guest:guest@127.0.0.1:5672/"
        return lambda: rabbitmq_queue_health(url, queues)
    if not s.redis_url:
        return None
    import redis

    client = redis.Redis.from_url(s.redis_url, socket_timeout=2)

    def read() -> QueueHealth:
        return queue_health(client, "dramatiq", queues, int(time.time() * 1000))

    return read


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
@click.option(
    "--signing-key",
    envvar="GOODFAITH_SIMULATOR_SIGNING_KEY",
    default=None,
    help="Ed25519 private key (32-byte seed, base64) its webhooks are signed with; "
    "generated when unset. The public key is served at GET /_sim/telnyx-public-key.",
)
@click.option(
    "--vendor-secret",
    envvar="GOODFAITH_SIMULATOR_VENDOR_SECRET",
    default=None,
    help="HMAC key its retrieval vendor (/vendor/v1/orders) signs callbacks with: the "
    "webhook_secret of the vendors in our GOODFAITH_RETRIEVAL_VENDORS; unset, callbacks "
    "go unsigned (and are refused)",
)
def simulator(
    host: str,
    port: int,
    webhook_url: str | None,
    public_url: str | None,
    drop_webhooks: float,
    signing_key: str | None,
    vendor_secret: str | None,
) -> None:
    """Serve the simulated far side (fax carrier, FHIR servers, agencies) in real time.

    Its webhooks are signed as Telnyx signs them; give our processes the public key it prints
    (and serves) as GOODFAITH_FAX__WEBHOOK_PUBLIC_KEY."""
    import base64
    import binascii
    import secrets

    import uvicorn

    from connectors.registry import webhook_url as vendor_webhook_url
    from simulator.app import Simulator
    from simulator.telnyx import public_key_of
    from worker.domain.clock import SystemClock
    from worker.wiring import make_http_client

    try:
        seed = base64.b64decode(signing_key, validate=True) if signing_key else None
    except binascii.Error:
        seed = b""
    if seed is not None and len(seed) != 32:
        _fail("--signing-key (GOODFAITH_SIMULATOR_SIGNING_KEY) is not a base64 32-byte seed")
    seed = seed or secrets.token_bytes(32)
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
        signing_key=seed,
        vendor_webhook_secret=vendor_secret,
    )
    click.echo(f"simulator: telnyx webhook public key {public_key_of(seed)}", err=True)
    sim.start_background(1.0)
    uvicorn.run(sim.app, host=host, port=port, log_level="warning")


@main.group()
def export() -> None:
    """Compliance exports."""


@export.command("attempts")
@click.option(
    "--case", "case_id", default=None, help="only this case: its id or its notification id"
)
@click.option("--provider", "provider_id", default=None, help="only this provider_id")
@click.option("--campaign", "campaign_id", default=None, help="only this campaign's requests")
@click.option("--agency", "agency_id", default=None, help="only cases for this agency_id")
@click.option("--jurisdiction", default=None, help="only cases of this jurisdiction (e.g. MA)")
@click.option(
    "--from", "received_from", default=None, help="cases received at or after (date or ISO-8601)"
)
@click.option("--to", "received_to", default=None, help="cases received before (date or ISO-8601)")
@click.option("--mask-destination", is_flag=True, help="show only the last 4 digits of fax numbers")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None)
def export_attempts_cmd(
    case_id: str | None,
    provider_id: str | None,
    campaign_id: str | None,
    agency_id: str | None,
    jurisdiction: str | None,
    received_from: str | None,
    received_to: str | None,
    mask_destination: bool,
    fmt: str,
    output: str | None,
) -> None:
    """Every documented attempt: case, notification, provider, designee, attempt number,
    planned and sent times, channel, destination, outcome, external id, reason, and whether
    the request met the three-attempt standard by the cutoff (standard_met).

    Streams rows from the database; with ``--output`` the file appears whole or not at all,
    and progress goes to stderr. The audit chain head goes to stderr."""
    import os
    import tempfile

    from storage.auditchain import chain_head
    from worker.readmodels.export import (
        PAGE,
        ExportFilter,
        count_attempts,
        find_case,
        iter_attempts,
        parse_bound,
        render_chunks,
    )

    try:
        start = parse_bound(received_from, "--from") if received_from else None
        end = parse_bound(received_to, "--to") if received_to else None
    except ValueError as exc:
        _fail(str(exc))
    c = _container()
    try:
        if case_id is not None:
            found = find_case(c.sessions, case_id)
            if found is None:
                _fail(f"--case {case_id!r}: no case has that id or notification id", EXIT_FAILED)
            case_id = found
        flt = ExportFilter(
            case_id,
            provider_id,
            agency_id,
            jurisdiction,
            start,
            end,
            mask_destination,
            campaign_id,
        )
        head = chain_head(c.sessions)
        click.echo(f"audit chain head: seq {head[0]} sha256 {head[1]}", err=True)
        rows = iter_attempts(c, flt=flt)
        if not output:
            for chunk in render_chunks(rows, fmt, head):
                click.echo(chunk, nl=False)
            return
        total = count_attempts(c, flt)

        def counted() -> Any:
            for n, row in enumerate(rows, 1):
                yield row
                if n % PAGE == 0:
                    click.echo(f"exported {n}/{total} attempts", err=True)
            click.echo(f"exported {total}/{total} attempts to {output}", err=True)

        target = Path(output)
        fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.writelines(render_chunks(counted(), fmt, head))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        c.close()


@export.command("profiles")
@click.option("--provider", "provider_id", default=None, help="only this provider_id")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None)
def export_profiles_cmd(provider_id: str | None, fmt: str, output: str | None) -> None:
    """Provider profiles measured from past attempts: requests by outcome, retrieval rate,
    hours to reply (median, mean) and each channel's success."""
    from worker.readmodels.profiles import provider_profiles, render_profiles

    c = _container()
    try:
        text = "".join(render_profiles(provider_profiles(c, provider_id), fmt))
    finally:
        c.close()
    if output:
        Path(output).write_text(text)
        click.echo(f"exported profiles to {output}", err=True)
    else:
        click.echo(text, nl=False)


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
        _fail(f"--received: not an ISO-8601 instant: {received!r}")
    try:
        j = get_jurisdiction(jurisdiction)
    except UnknownJurisdiction as exc:
        _fail(f"--jurisdiction: {str(exc).strip(chr(39) + chr(34))}")
    try:
        click.echo(due_at(j, review_type, instant).isoformat())
    except DeadlineError as exc:
        option = "--received" if "received_at" in str(exc) else "--review"
        _fail(f"{option}: {exc}")


@main.group("campaign")
def campaign_group() -> None:
    """Campaigns (bulk record retrieval): load a CSV, follow progress, cancel."""


@campaign_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="the campaign's name (e.g. 'RA charts 2026 Q1')")
@click.option("--jurisdiction", default="MA", show_default=True, help="zone and calendar")
@click.option("--attempts", default=3, show_default=True, type=click.IntRange(1, 10))
@click.option(
    "--spacing",
    "spacing_fraction",
    default=0.25,
    show_default=True,
    type=click.FloatRange(0.05, 0.9, max_open=True),
    help="gap between attempts, as a fraction of each request's window (business time)",
)
@click.option(
    "--first-channel",
    type=click.Choice(["listed", "profile"]),
    default="listed",
    show_default=True,
    help="profile: the provider's best-answering channel so far",
)
@click.option(
    "--key",
    default=None,
    help="names this load (as the API's Idempotency-Key): loading again with it returns the "
    "campaign it made. Without it the content names the load: the same file, name and policy "
    "again make no second campaign",
)
def campaign_load(
    file: str,
    name: str,
    jurisdiction: str,
    attempts: int,
    spacing_fraction: float,
    first_channel: str,
    key: str | None,
) -> None:
    """Load FILE (CSV, header row; columns in worker/campaign.py). Every row is checked
    first: bad rows are listed by row and column and nothing is stored. Progress goes to
    stderr; the campaign's cases are opened by the scheduler, a batch a tick. Loading the
    same again prints the campaign the first load made ("created": false) and stores
    nothing."""
    from worker.campaign import CampaignError
    from worker.services import load_campaign

    s = get_settings()
    configure_logging(s.log_level, s.log_format)
    try:
        text = Path(file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{file}: cannot read it as UTF-8 text ({exc})")
    doc = {
        "name": name,
        "jurisdiction": jurisdiction,
        "policy": {
            "attempts": attempts,
            "spacing_fraction": spacing_fraction,
            "first_channel": first_channel,
        },
        "csv": text,
    }

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "checked":
            click.echo(f"checked {done} rows", err=True)
        elif done == total or done % 10_000 == 0:
            click.echo(f"stored {done}/{total} requests", err=True)

    c = _container()
    try:
        result = load_campaign(c, doc, "cli", progress, key)
    except CampaignError as exc:
        for row, column, msg in exc.errors[:200]:
            where = column if row == 0 else f"row {row}, column {column}"
            click.echo(f"error: {where}: {msg}", err=True)
        if len(exc.errors) > 200:
            click.echo(f"... {len(exc.errors) - 200} more errors", err=True)
        click.echo(f"nothing stored: {len(exc.errors)} error(s)", err=True)
        sys.exit(EXIT_INPUT)
    finally:
        c.close()
    if not result.created:
        click.echo(
            f"already loaded: campaign {result.campaign_id} ({result.status}); nothing stored",
            err=True,
        )
    click.echo(
        json.dumps(
            {
                "campaign_id": result.campaign_id,
                "requests": result.requests,
                "created": result.created,
                "status": result.status,
            }
        )
    )


@campaign_group.command("list")
def campaign_list() -> None:
    """Print the campaigns (newest first) with their requests by status, as JSON."""
    from worker.readmodels.campaigns import list_campaigns

    c = _container()
    try:
        click.echo(json.dumps(list_campaigns(c, limit=200), indent=2))
    finally:
        c.close()


@campaign_group.command("show")
@click.argument("campaign_id")
def campaign_show(campaign_id: str) -> None:
    """Print one campaign's progress and results as JSON."""
    from worker.readmodels.campaigns import campaign_detail

    c = _container()
    try:
        found = campaign_detail(c, campaign_id)
    finally:
        c.close()
    if found is None:
        _fail(f"no campaign {campaign_id!r}: see goodfaith campaign list", EXIT_FAILED)
    click.echo(json.dumps(found, indent=2))


@campaign_group.command("cancel")
@click.argument("campaign_id")
@click.option("--reason", default="campaign cancelled", show_default=True)
def campaign_cancel(campaign_id: str, reason: str) -> None:
    """Cancel CAMPAIGN_ID: its open requests close as cancelled, no further attempt or redial
    (audited); open FHIR Tasks are withdrawn at the far side by the workers."""
    from worker.services import cancel_campaign

    c = _container(dispatcher=_broker_dispatcher())
    try:
        cancelled = cancel_campaign(c, campaign_id, reason[:200], "cli")
    finally:
        c.close()
    if cancelled is None:
        _fail(f"no campaign {campaign_id!r}: see goodfaith campaign list", EXIT_FAILED)
    click.echo(json.dumps({"campaign_id": campaign_id, "cases_cancelled": cancelled}))


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


@contextmanager
def _database(migrate_schema: bool = True) -> Iterator[Any]:
    """A sessionmaker on GOODFAITH_DATABASE_URL (migrated first); a malformed URL exits 2 and
    an unreachable database 69, each with one line naming the setting, never a traceback."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from storage.db import make_engine, make_sessionmaker, migrate

    url = get_settings().database_url
    try:
        engine = make_engine(url, get_settings().db)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        _fail(f"GOODFAITH_DATABASE_URL is not a database URL ({type(exc).__name__}): {_safe(url)}")
    try:
        try:
            if migrate_schema:
                migrate(engine)
            else:
                with engine.connect():
                    pass
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            _fail(
                f"cannot reach the database GOODFAITH_DATABASE_URL={_safe(url)}: {reason}",
                EXIT_UNAVAILABLE,
            )
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


def _safe(url: str) -> str:
    """``url`` with any password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable at all: show the scheme only
        return url.split(":", 1)[0] + ":…"


@main.group()
def keys() -> None:
    """API keys: each opens the endpoints of one role (intake, ops, compliance, admin)."""


@keys.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["intake", "ops", "compliance", "admin"]),
    help="intake: notifications, cancel; ops: cases, dashboard, dead letters; "
    "compliance: exports, audit, packets; admin: keys",
)
@click.option("--name", default="", help="who or what uses it (shown by keys list)")
def keys_create(role: str, name: str) -> None:
    """Create a key; it is printed once, alone on the last line (only its hash is stored)."""
    from worker.domain.clock import SystemClock
    from worker.services.keys import Role, create_key

    with _database() as sessions:
        made = create_key(sessions, Role(role), name[:128], SystemClock().now())
    click.echo(f"created key {made.id} (role {made.role.value}); it is shown only now:", err=True)
    click.echo(made.key)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="include revoked keys")
def keys_list(include_revoked: bool) -> None:
    """Print the keys as JSON: id, prefix, role, name, created and revoked times (no keys)."""
    from worker.services.keys import list_keys

    with _database() as sessions:
        click.echo(json.dumps(list_keys(sessions, include_revoked), indent=2))


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke KEY_ID (its id or prefix, as keys list shows them); effective at once."""
    from worker.domain.clock import SystemClock
    from worker.services.keys import revoke_key

    with _database() as sessions:
        done = revoke_key(sessions, key_id, SystemClock().now())
    if done is None:
        _fail(f"no key {key_id!r} (or more than one): see goodfaith keys list", EXIT_FAILED)
    click.echo(json.dumps({"id": key_id, "status": "revoked" if done else "already revoked"}))


@main.group()
def audit() -> None:
    """The tamper-evident audit trail."""


@audit.command("verify")
def audit_verify() -> None:
    """Check the hash chain of every audit event: exit 0 when intact, 1 naming the first
    broken event (its seq, row id and kind) otherwise."""
    from storage.auditchain import verify_chain

    with _database() as sessions:
        check = verify_chain(sessions)
    if not check.ok:
        _fail(check.describe(), EXIT_FAILED)
    click.echo(check.describe())


@main.group("inbox")
def inbox_group() -> None:
    """Inbound documents that matched no request: list them, open one, assign it."""


@inbox_group.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(0, 500))
def inbox_list(limit: int) -> None:
    """Print the unmatched documents as JSON (newest first)."""
    from worker.readmodels.inbox import unmatched_documents

    c = _container()
    try:
        page = unmatched_documents(c, limit=limit)
    finally:
        c.close()
    click.echo(json.dumps(page, indent=2))


@inbox_group.command("show")
@click.argument("document_id")
@click.option("--out", type=click.Path(dir_okay=False), help="write the document's bytes here")
def inbox_show(document_id: str, out: str | None) -> None:
    """Print DOCUMENT_ID's details as JSON; with --out, save the document as received."""
    from worker.readmodels.inbox import unmatched_content, unmatched_document

    c = _container()
    try:
        found = unmatched_document(c, document_id)
        data = unmatched_content(c, document_id) if found is not None and out else None
    finally:
        c.close()
    if found is None:
        raise click.ClickException(
            f"no unmatched document {document_id!r}: see goodfaith inbox list"
        )
    if out and data is not None:
        Path(out).write_bytes(data)
    click.echo(json.dumps(found, indent=2))


@inbox_group.command("assign")
@click.argument("document_id")
@click.argument("request")
@click.option("--by", "assigned_by", required=True, help="who assigns it (kept in the audit trail)")
def inbox_assign(document_id: str, request: str, assigned_by: str) -> None:
    """File DOCUMENT_ID with REQUEST (a request id or its GF- reference); it then counts for
    that request (audited)."""
    from worker.services import AssignOutcome, assign_document

    c = _container(dispatcher=_broker_dispatcher())
    try:
        outcome = assign_document(c, document_id, request, assigned_by)
    finally:
        c.close()
    if outcome is AssignOutcome.UNKNOWN_DOCUMENT:
        raise click.ClickException(f"no document {document_id!r}: see goodfaith inbox list")
    if outcome is AssignOutcome.UNKNOWN_REQUEST:
        raise click.ClickException(f"no request {request!r} (give its id or GF- reference)")
    if outcome is AssignOutcome.ALREADY_ASSIGNED:
        raise click.ClickException(f"document {document_id!r} already belongs to a request")
    click.echo(json.dumps({"document_id": document_id, "status": outcome.value}))


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
    with _database():
        pass
    click.echo("database is at the newest migration")


if __name__ == "__main__":  # pragma: no cover
    main()
