"""The ``memberguard`` command.

Every command builds its own ``Settings`` from the environment (prefix
``MEMBERGUARD_``) and passes it down; nothing happens at import time.

Errors end in one line on stderr, ``memberguard: error: …``, never a
traceback. Exit status: 1 when the command ran and failed or was refused (a
domain rule, a failed verification), 2 when it could not run here (usage, and
any ``SetupError``: settings, keys, the database, the port). Both are handled
in one place, ``MemberguardCLI.invoke``, not per command.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from breach.states import Status as IncidentStatus
from breach.terms import NOTICE_CHANNELS, REPORT_FORMATS, REPORT_LOCALES, SEVERITIES
from core.errors import DomainError, SetupError
from core.settings import Settings, load_settings
from principals.actor import ROLES, SCOPES

SETUP_FAILED = 2

if TYPE_CHECKING:
    from cli.demo import TourMembers


def _settings() -> Settings:
    return load_settings()


def _services(settings: Settings) -> Any:
    """The services, after checking the database answers and is migrated: a command fails
    on a bad URL or an uninitialised home before it starts, with the fix."""
    from gate.context import build_services, check_database

    services = build_services(settings)
    check_database(settings)
    return services


def _error(message: str) -> None:
    click.secho(f"memberguard: error: {message}", fg="red", err=True)


def _fail(message: str, code: int = 1) -> None:
    _error(message)
    sys.exit(code)


class MemberguardCLI(click.Group):
    """The one place where errors become a line on stderr and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        from policies import PolicyError

        try:
            return super().invoke(ctx)
        except SetupError as exc:
            _error(str(exc))
            ctx.exit(SETUP_FAILED)
        except PolicyError as exc:
            _error("\n  ".join(["the policy does not load:", *exc.problems]))
            ctx.exit(SETUP_FAILED)
        except DomainError as exc:
            _error(exc.detail)
            ctx.exit(1)


@click.group(cls=MemberguardCLI, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memberguard", prog_name="memberguard")
def main() -> None:
    """memberguard: the privacy gate for loyalty-programme member data."""


# -- init ---------------------------------------------------------------------


def run_init(settings: Settings, *, echo: bool = True) -> None:
    from audit.notary import make_private_directory
    from audit.signer import create_signer_file, load_signer_env, load_signer_file
    from core.db import make_sqlite_file_private
    from gate.context import check_database
    from migrations import upgrade
    from vault.keys import EnvKeyring, LocalKeyFile

    say = click.echo if echo else (lambda *_a, **_k: None)
    settings.home.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.home, 0o700)
    # Private before anything opens it, the connection check included: SQLite
    # would create the file under the umask.
    private = make_sqlite_file_private(settings.resolved_database_url)
    if private is not None and private[1]:
        say(f"database: {private[0]} was readable by others; now mode 0600")
    # Before any key is created: a wrong URL fails with nothing half set up.
    check_database(settings, migrated=False)
    if settings.key_provider == "local":
        key_file = LocalKeyFile(settings.resolved_key_path)
        if key_file.exists():
            key_file.load()  # refuses a malformed or world-readable key file
            say(f"keys:     {settings.resolved_key_path} (exists)")
        else:
            key_file.create()
            say(f"keys:     {settings.resolved_key_path} (created, mode 0600)")
    else:
        EnvKeyring(settings.keyring_env).load()
        say(f"keys:     ${settings.keyring_env}")
    if settings.key_provider == "local":
        signer = settings.resolved_signer_path
        if signer.exists():
            load_signer_file(signer, name=settings.audit_origin)
            say(f"signer:   {signer} (exists)")
        else:
            create_signer_file(signer, name=settings.audit_origin)
            say(f"signer:   {signer} (created, mode 0600)")
    else:
        load_signer_env(settings.audit_signer_env, name=settings.audit_origin)
        say(f"signer:   ${settings.audit_signer_env}")
    make_private_directory(settings.resolved_checkpoint_dir)
    upgrade(url=settings.resolved_database_url)
    say("database: migrated to the latest schema")


@main.command()
def init() -> None:
    """Create the key files (0600), the SQLite file (0600), the checkpoint directory (0700) and
    the database schema; tightens any of them readable by others (idempotent; honours
    MEMBERGUARD_HOME)."""
    run_init(_settings())


# -- serve --------------------------------------------------------------------


def app_factory() -> Any:
    """Entry point for uvicorn (``factory=True``): one app per worker process."""
    from api.app import create_app
    from core.logging import configure_logging
    from gate.context import build_services

    settings = _settings()
    services = build_services(settings)
    configure_logging(
        log_format=settings.log_format,
        level=settings.log_level,
        personal_keys=services.policy.personal_field_names,
    )
    return create_app(services=services)


class PortUnavailable(SetupError):
    """The address to serve on cannot be listened on."""


def _check_port(host: str, port: int) -> None:
    """Listen on ``host:port`` once, as uvicorn will (SO_REUSEADDR), and let go.

    So that a busy port fails before anything is loaded or printed, in one line.
    Something else can still take the port in between; uvicorn then fails on its own.
    """
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PortUnavailable(
            f"cannot listen on {host}:{port}: {reason[0].lower()}{reason[1:]}; stop what is "
            "using it, or choose another address with --port (and --host)"
        ) from None


def _serve(host: str, port: int, workers: int, *, trusted_proxies: str | None = None) -> None:
    import uvicorn

    # The client address counts members' sign-in attempts (rate limits). Behind
    # a reverse proxy every request comes from the proxy, so the proxy's
    # X-Forwarded-For is believed, but only from the proxies the operator names.
    uvicorn.run(
        "cli.main:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        proxy_headers=trusted_proxies is not None,
        **({"forwarded_allow_ips": trusted_proxies} if trusted_proxies is not None else {}),
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (uvicorn). Use several workers on PostgreSQL or MySQL."""
    _check_port(host, port)
    # Keys, signer, policy and database are checked here, once, before uvicorn
    # starts: in a worker, a failure would only be a traceback. Each worker
    # builds its own services; these are only the check.
    settings = _settings()
    _services(settings).dispose()
    _serve(host, port, workers, trusted_proxies=settings.trusted_proxies)


# -- worker -------------------------------------------------------------------


def _utc(moment: Any) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _run_line(run: Any) -> str:
    """One line per job run: its counts, or why it failed and when it is tried again."""
    if run.status == "ok":
        counts = ", ".join(f"{name}={count}" for name, count in sorted(run.result.items()))
        seconds = (run.finished_at - run.started_at).total_seconds()
        return f"{run.job}: ok{', ' + counts if counts else ''} ({seconds:.2f} s)"
    retry = f"; next try {_utc(run.next_due_at)}" if run.next_due_at is not None else ""
    return f"{run.job}: failed ({run.error}){retry}"


def _until_stopped(work: Any) -> Any:
    """Run ``work(stop)`` in a thread; SIGTERM or SIGINT sets ``stop``, so the job running
    finishes and no other starts. A second signal ends the process at once (the job's lease
    then expires by itself). Returns what ``work`` returned, or raises what it raised."""
    import signal
    import threading

    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def request_stop(signum: int, _frame: Any) -> None:
        click.echo("memberguard worker: stopping after the current job", err=True)
        # Safe in a handler: the main thread only joins (it never holds the event's lock).
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    def target() -> None:
        try:
            outcome["result"] = work(stop)
        except BaseException as exc:  # re-raised in the main thread, below
            outcome["error"] = exc

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        thread = threading.Thread(target=target, name="memberguard-worker")
        thread.start()
        thread.join()  # no timeout: a signal handler still runs, and then the join goes on
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


@main.group(invoke_without_command=True)
@click.option("--once", is_flag=True, help="Run the jobs that are due once, then exit (cron).")
@click.option("--job", "names", multiple=True, metavar="NAME", help="Only this job (repeatable).")
@click.pass_context
def worker(ctx: click.Context, once: bool, names: tuple[str, ...]) -> None:
    """Run the scheduled jobs that are due, until stopped (`worker status` lists them).

    Runs until SIGTERM or Ctrl-C, which let the job running finish. Servers run
    the same jobs unless MEMBERGUARD_WORKER_IN_SERVER=false; any number of
    workers and servers may share a database: each job runs at most once per
    interval across all of them. Prints one line per run; exits 1 after a
    failed run with --once.
    """
    if ctx.invoked_subcommand is not None:
        if once or names:
            raise click.UsageError("--once and --job go with `memberguard worker` alone")
        return
    _run_worker(_settings(), once=once, names=names)


def _registered_jobs(settings: Settings, names: tuple[str, ...]) -> list[Any]:
    from worker import jobs as registry

    jobs = registry.default_jobs(settings)
    known = [job.name for job in jobs]
    for name in names:
        if name not in known:
            raise click.BadParameter(
                f"no job {name!r}; the jobs are: {', '.join(known) or '(none)'}",
                param_hint="--job",
            )
    return [job for job in jobs if not names or job.name in names]


def _run_worker(settings: Settings, *, once: bool, names: tuple[str, ...]) -> None:
    from core.logging import configure_logging
    from worker.runner import Worker, job_statuses

    jobs = _registered_jobs(settings, names)
    services = _services(settings)
    try:
        # Logs (JSON by default) on stderr; the lines for people on stdout.
        configure_logging(
            log_format=settings.log_format,
            level=settings.log_level,
            personal_keys=services.policy.personal_field_names,
        )
        worker = Worker(services, jobs, on_run=lambda run: click.echo(_run_line(run)))
        if once:
            runs = _until_stopped(lambda stop: worker.run_once(stop=stop))
            ran = {run.job for run in runs}
            now = services.clock()
            for status in job_statuses(services, jobs):
                if status.name in ran or status.every_seconds is None:
                    continue
                if status.lease_expires_at is not None and status.lease_expires_at > now:
                    owner = (status.lease_owner or "").rsplit(" ", 1)[0]
                    click.echo(
                        f"{status.name}: running in {owner} (lease until "
                        f"{_utc(status.lease_expires_at)})"
                    )
                else:
                    click.echo(f"{status.name}: not due until {_utc(status.next_due_at)}")
            if any(run.status == "failed" for run in runs):
                sys.exit(1)
            return
        plan = ", ".join(f"{job.name} every {job.every.total_seconds():g} s" for job in jobs)
        click.echo(
            f"memberguard worker: {plan or 'no jobs'}; looking every "
            f"{settings.worker_tick_seconds} s; SIGTERM or Ctrl-C stops after the current job",
            err=True,
        )
        _until_stopped(worker.run_forever)
    finally:
        services.dispose()


@worker.command("status")
@click.option("--json", "as_json", is_flag=True, help="One object per job.")
def worker_status(as_json: bool) -> None:
    """Each job: its interval, last run and how it went, next due time, runs and failures."""
    from dataclasses import asdict

    from worker.runner import job_statuses

    settings = _settings()
    jobs = _registered_jobs(settings, ())
    services = _services(settings)
    try:
        statuses = job_statuses(services, jobs)
    finally:
        services.dispose()
    if as_json:
        rows = [
            {
                name: (_utc(value) if name.endswith("_at") and value is not None else value)
                for name, value in asdict(status).items()
            }
            for status in statuses
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for status in statuses:
        every = f"every {status.every_seconds} s" if status.every_seconds else "not registered"
        state = status.status
        if status.status == "failed":
            state = f"failed ({status.last_error}, {status.consecutive_failures} in a row)"
        elif status.status == "running":
            owner = (status.lease_owner or "").rsplit(" ", 1)[0]
            state = f"running in {owner} until {_utc(status.lease_expires_at)}"
        due = "at the first look" if status.next_due_at is None else _utc(status.next_due_at)
        click.echo(
            f"{status.name:<24} {every:<16} {state}; last run {_utc(status.last_started_at)}; "
            f"next due {due}; runs {status.runs}, failures {status.failures}"
        )


# -- demo ---------------------------------------------------------------------


@main.command()
@click.option(
    "--members", "n_members", default=10_000, show_default=True, type=click.IntRange(0, 5_000_000)
)
@click.option("--seed", default=20261122, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--no-serve", is_flag=True, help="Load the data and print the tour, but do not serve."
)
def demo(n_members: int, seed: int, host: str, port: int, no_serve: bool) -> None:
    """Load synthetic members, consents and clients; have the SMS gateway read 20 members
    (the tour's breach incident finds them); print keys and a curl tour; serve."""
    import time

    from cli.demo import (
        CAMPAIGN_CLIENT,
        CAMPAIGN_PURPOSE,
        ensure_clients,
        load_members,
        member_count,
        run_sms_campaign,
        sample_members,
    )

    settings = _settings()
    if not no_serve:
        _check_port(host, port)  # before loading anything: a busy port wastes no one's time
    run_init(settings)
    services = _services(settings)
    existing = member_count(services)
    if existing:
        click.echo(f"members:  {existing} already loaded (delete {settings.home} to start over)")
    elif n_members:
        started = time.perf_counter()
        with click.progressbar(length=n_members, label="loading members", file=sys.stderr) as bar:
            load_members(services, n_members, seed=seed, progress=bar.update)
        elapsed = time.perf_counter() - started
        click.echo(
            f"members:  {n_members} loaded in {elapsed:.1f} s ({n_members / elapsed:,.0f}/s)"
        )
    keys = ensure_clients(services)
    members = sample_members(services, seed=seed)
    campaign_key = keys.get(CAMPAIGN_CLIENT)
    if campaign_key is not None and members is not None:
        read = run_sms_campaign(services, campaign_key, exclude=[members.granted])
        click.echo(
            f"campaign: {CAMPAIGN_CLIENT} read {read} members who granted {CAMPAIGN_PURPOSE} "
            "(the tour's breach incident finds them in the log)"
        )
    click.echo(_tour(keys, members, f"http://{host}:{port}", _invoked_as()))
    if not no_serve:
        # The demo is local: its API docs are readable without a key.
        os.environ.setdefault("MEMBERGUARD_DOCS_PUBLIC", "true")
        _serve(host, port, 1)


def _invoked_as() -> str:
    """How to run memberguard again from the same directory: ``.venv/bin/memberguard`` when
    it was started by that relative path (as the README's install leaves it), else the name."""
    argv0 = sys.argv[0]
    if Path(argv0).name == "memberguard" and not Path(argv0).is_absolute() and "/" in argv0:
        return argv0
    return "memberguard"


def _tour(keys: dict[str, str], members: TourMembers | None, base: str, command: str) -> str:
    lines = ["", "Demo clients (keys are shown once; only their hashes are stored):"]
    lines += [f"  {name:<12} {key}" for name, key in keys.items()]
    if not keys or members is None:
        return "\n".join(lines)
    crm, sms, dpo = keys.get("crm"), keys.get("sms_gateway"), keys.get("dpo")
    json_body = "-H 'Content-Type: application/json'"
    lines += [
        "",
        "Try it (in another terminal):",
        f"  export CRM={crm} SMS={sms} DPO={dpo}",
        f"  export A={members.granted}   # granted marketing_sms",
        f"  export B={members.without}   # no marketing_sms consent",
        f"  export PHONE={members.phone}   # A's phone (synthetic), to sign in with",
        "",
        "  # customer service sees masked contact data",
        f'  curl -s "{base}/v1/members/$A?purpose=customer_service" \\\n'
        '       -H "Authorization: Bearer $CRM"',
        "  # the SMS gateway gets the phone only with consent",
        f'  curl -si "{base}/v1/members/$A?purpose=marketing_sms" -H "Authorization: Bearer $SMS"',
        f'  curl -s "{base}/v1/members/$B?purpose=marketing_sms" -H "Authorization: Bearer $SMS"',
        "  # the member withdraws at the app; the very next read is refused",
        f'  curl -s -X POST "{base}/v1/members/$A/consents" -H "Authorization: Bearer $CRM" \\',
        f"       {json_body} \\",
        '       -d "{\\"purposes\\":[\\"marketing_sms\\"],\\"status\\":\\"withdrawn\\",'
        '\\"channel\\":\\"app\\",\\"collected_at\\":\\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\\"}"',
        f'  curl -s "{base}/v1/members/$A?purpose=marketing_sms" -H "Authorization: Bearer $SMS"',
        "  # the auditor sees every decision, refusals included",
        f'  curl -s "{base}/v1/audit/entries?member=$A" -H "Authorization: Bearer $DPO"',
        "  # A signs in with a one-time code (the demo's messages land in its outbox)",
        "  field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "
        '"$1"; }',
        f'  export CHALLENGE=$(curl -s -X POST "{base}/v1/me/login" {json_body} \\',
        '       -d "{\\"phone\\":\\"$PHONE\\"}" | field challenge)',
        f'  export TOKEN=$(curl -s -X POST "{base}/v1/me/login/verify" {json_body} \\',
        '       -d "{\\"challenge\\":\\"$CHALLENGE\\",\\"code\\":\\"$('
        + command
        + ' outbox code)\\"}" | field token)',
        "  # A sees who received their data (by name), and gets a copy of it at once",
        f'  curl -s "{base}/v1/me/access-log" -H "Authorization: Bearer $TOKEN"',
        f'  export COPY=$(curl -s -X POST "{base}/v1/me/requests" \\',
        f'       -H "Authorization: Bearer $TOKEN" {json_body} -d \'{{"type":"access"}}\' \\',
        "       | field id)",
        f'  curl -s "{base}/v1/me/requests/$COPY/copy" -H "Authorization: Bearer $TOKEN"',
        "  # A asks for deletion: crypto-shredded at once; then no client finds A",
        f'  curl -s -X POST "{base}/v1/me/requests" -H "Authorization: Bearer $TOKEN" \\',
        f'       {json_body} -d \'{{"type":"deletion"}}\'',
        f'  curl -s "{base}/v1/members/$A?purpose=customer_service" \\\n'
        '       -H "Authorization: Bearer $CRM"',
        "  # the DPO's queue: the deletion, with every client that ever received A's data",
        f'  curl -s "{base}/v1/requests?type=deletion" -H "Authorization: Bearer $DPO"',
        "  # the DPO learns that the SMS gateway's key leaked yesterday: the log says whom it hit",
        "  export YESTERDAY=$(python3 -c 'import datetime as d; print((d.datetime.now("
        'd.timezone.utc) - d.timedelta(days=1)).isoformat(timespec="seconds"))\')',
        f'  export INCIDENT=$(curl -s -X POST "{base}/v1/incidents" -H "Authorization: Bearer '
        f'$DPO" \\\n       {json_body} \\',
        '       -d "{\\"title\\":\\"The SMS gateway\'s key leaked yesterday\\",'
        '\\"severity\\":\\"high\\",\\"description\\":\\"Its API key was found in a '
        'public paste.\\",\\"detected_at\\":\\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\\",'
        '\\"scope\\":{\\"kind\\":\\"client\\",\\"client\\":\\"sms_gateway\\",'
        '\\"from\\":\\"$YESTERDAY\\"}}" | field id)',
        f'  curl -s "{base}/v1/incidents/$INCIDENT" -H "Authorization: Bearer $DPO"',
        f'  curl -s "{base}/v1/incidents/$INCIDENT/affected" -H "Authorization: Bearer $DPO"',
        "  # the assessment, then the regulator's report: printable HTML and JSON",
        f'  curl -s -X POST "{base}/v1/incidents/$INCIDENT/assess" -H "Authorization: Bearer '
        f'$DPO" \\\n       {json_body} \\',
        '       -d \'{"consequences":"Spam or phishing texts to the members concerned.",'
        '"measures":"The key was revoked and replaced.","member_advice":'
        '"Never send a code or a payment asked for by text."}\'',
        f'  curl -s "{base}/v1/incidents/$INCIDENT/report?format=html&lang=en" \\\n'
        '       -H "Authorization: Bearer $DPO" -o report.html',
        f'  curl -s "{base}/v1/incidents/$INCIDENT/report?lang=en" -H "Authorization: Bearer $DPO"',
        "  # the authority was told; then the members are, by e-mail, else SMS",
        f'  curl -s -X POST "{base}/v1/incidents/$INCIDENT/authority-notified" \\\n'
        f'       -H "Authorization: Bearer $DPO" {json_body} \\',
        '       -d "{\\"at\\":\\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\\",\\"authority\\":'
        '\\"Shenzhen Cyberspace Administration\\",\\"reference\\":\\"SZ-0042\\"}"',
        f'  curl -s -X POST "{base}/v1/incidents/$INCIDENT/notify-members" \\\n'
        f'       -H "Authorization: Bearer $DPO" {json_body} -d \'{{"channels":["email","sms"]}}\'',
        f'  curl -s "{base}/v1/incidents/$INCIDENT/notices" -H "Authorization: Bearer $DPO"',
        f"  {command} incidents list",
        "  # the operator checks the whole log from the stored bytes (same directory and home)",
        f"  {command} audit verify",
        "",
        f"OpenAPI: {base}/docs",
        f"Privacy centre: {base}/privacy/   (sign in as A with $PHONE; the code: "
        f"{command} outbox code)",
    ]
    return "\n".join(lines)


# -- clients ------------------------------------------------------------------


@main.group()
def clients() -> None:
    """Register, list and revoke the systems that may call the API."""


@clients.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option(
    "--purpose", "purposes", multiple=True, help="Purpose the client is granted (repeatable)."
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help=f"{', '.join(sorted(SCOPES))} (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"id","name","role","key"}.')
def clients_add(
    name: str, role: str, purposes: tuple[str, ...], scopes: tuple[str, ...], as_json: bool
) -> None:
    """Register a client and print its API key (shown once)."""
    from gate.clients import register_client
    from principals import OPERATOR_ACTOR

    services = _services(_settings())
    issued = register_client(
        services,
        actor=OPERATOR_ACTOR,
        name=name,
        role=role,
        purposes=list(purposes),
        scopes=list(scopes),
        request_id=None,
    )
    if as_json:
        click.echo(
            json.dumps({"id": issued.client["id"], "name": name, "role": role, "key": issued.key})
        )
    else:
        click.echo(f"client {name} ({issued.client['id']}), role {role}")
        click.echo(f"key (shown once): {issued.key}")


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
def clients_list(as_json: bool) -> None:
    """List clients with their role, purposes and state."""
    from gate.clients import list_clients

    rows = list_clients(_services(_settings()))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "revoked" if row["revoked_at"] else "active"
        purposes = " ".join(row["purposes"])
        click.echo(f"{row['id']}  {row['name']:<16} {row['role']:<8} {state:<8} {purposes}")


@clients.command("revoke")
@click.argument("client")
def clients_revoke(client: str) -> None:
    """Revoke a client (by id or name); its keys stop working at once."""
    from gate.clients import revoke_client
    from principals import OPERATOR_ACTOR

    services = _services(_settings())
    seq = revoke_client(
        services, actor=OPERATOR_ACTOR, client=client, request_id=None, accept_name=True
    )
    click.echo(f"revoked {client} (audit entry {seq})")


@clients.command("webhook")
@click.argument("client")
@click.argument("url", required=False)
@click.option(
    "--rotate",
    is_flag=True,
    help="Issue a new signing secret; the old one signs too for "
    "MEMBERGUARD_WEBHOOK_SECRET_OVERLAP_HOURS.",
)
@click.option("--remove", is_flag=True, help="Stop pushing the client's events.")
def clients_webhook(client: str, url: str | None, rotate: bool, remove: bool) -> None:
    """Set a client's webhook URL (by id or name) and print its secret once; --rotate the
    secret; --remove it; with neither a URL nor an option, show it."""
    from gate import webhooks
    from principals import OPERATOR_ACTOR

    if sum((url is not None, rotate, remove)) > 1:
        raise click.UsageError("give a URL, --rotate or --remove, one at a time")
    services = _services(_settings())
    if url is not None:
        issued = webhooks.set_webhook(
            services,
            actor=OPERATOR_ACTOR,
            client=client,
            url=url,
            request_id=None,
            accept_name=True,
        )
        verb = "replaced" if issued.replaced else "set"
        click.echo(f"webhook of {client} {verb}: {issued.origin} (audit entry {issued.audit_seq})")
        click.echo(f"secret (shown once): {issued.secret}")
    elif rotate:
        rotated = webhooks.rotate_webhook_secret(
            services, actor=OPERATOR_ACTOR, client=client, request_id=None, accept_name=True
        )
        until = rotated.previous_valid_until.isoformat(timespec="seconds")
        click.echo(
            f"new secret for {client} (audit entry {rotated.audit_seq}); "
            f"the previous one also signs until {until}"
        )
        click.echo(f"secret (shown once): {rotated.secret}")
    elif remove:
        seq = webhooks.remove_webhook(
            services, actor=OPERATOR_ACTOR, client=client, request_id=None, accept_name=True
        )
        click.echo(f"webhook of {client} removed (audit entry {seq})")
    else:
        state = webhooks.webhook_state(services, client, accept_name=True)
        click.echo(json.dumps(state, indent=2))


# -- outbox -------------------------------------------------------------------


@main.group()
def outbox() -> None:
    """Messages the outbox transport kept instead of sending (MEMBERGUARD_*_TRANSPORT=outbox)."""


@outbox.command("list")
@click.option("--template", help="Only messages from this template (e.g. login_code).")
@click.option("--last", type=click.IntRange(min=1), help="Only the newest N messages.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the whole messages, recipient and body included, as a JSON array.",
)
def outbox_list(template: str | None, last: int | None, as_json: bool) -> None:
    """List the outbox's messages, oldest first; recipients masked unless --json."""
    from notify.outbox import read_outbox
    from vault.masking import mask_email, mask_phone

    settings = _settings()
    directory = settings.resolved_outbox_dir
    try:
        messages = list(read_outbox(directory))
    except (OSError, ValueError) as exc:
        # Only the class: a decoding error's text can quote the file's bytes (a recipient).
        _fail(f"cannot read the outbox {directory} ({type(exc).__name__})", SETUP_FAILED)
    total = len(messages)
    if template is not None:
        messages = [m for m in messages if m["template"] == template]
    if last is not None:
        messages = messages[-last:]
    if as_json:
        # The operator's own disk, files 0600: the demo and tests read codes here.
        click.echo(json.dumps(messages, indent=2, ensure_ascii=False))
        return
    if total == 0:
        click.echo(f"outbox is empty ({directory})")
        return
    if not messages:
        click.echo(f"no message with template {template} among the {total} in {directory}")
        return
    for message in messages:
        mask = mask_phone if message["channel"] == "sms" else mask_email
        click.echo(
            f"{message['created_at']}  {message['channel']:<5}  {message['template']:<18} "
            f"{message['id']}  {mask(message['to'])}"
        )


@outbox.command("code")
def outbox_code() -> None:
    """Print the one-time code of the newest sign-in message in the outbox.

    For the demo and for test environments that use the outbox: the code a
    member would have received, so that a sign-in can be finished by a script.
    """
    from notify.outbox import read_outbox

    directory = _settings().resolved_outbox_dir
    try:
        codes = [m for m in read_outbox(directory) if m["template"] == "login_code"]
    except (OSError, ValueError) as exc:
        _fail(f"cannot read the outbox {directory} ({type(exc).__name__})", SETUP_FAILED)
    found = re.search(r"(?<!\d)\d{6}(?!\d)", codes[-1]["body"]) if codes else None
    if found is None:
        _fail(f"no sign-in code in the outbox ({directory})", 1)
    click.echo(found.group())


# -- keys ---------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Key-encryption keys: generate, rotate, re-wrap, retire."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new keyring, base64-encoded, for MEMBERGUARD_KEY_PROVIDER=env."""
    from vault.keys import EnvKeyring, Keyring

    click.echo(EnvKeyring.encode(Keyring.generate()))


@keys.command("generate-signer")
def keys_generate_signer() -> None:
    """Print a new checkpoint signing key (for MEMBERGUARD_AUDIT_SIGNER) and its verifier key."""
    from audit.checkpoint import generate_signer

    _private, signer, verifier = generate_signer(_settings().audit_origin)
    click.echo(signer)
    click.echo(f"verifier key (give this to auditors): {verifier}", err=True)


@keys.command("rotate")
def keys_rotate() -> None:
    """Add a new KEK version; once every server holds it, run `memberguard keys rewrap`.

    Two steps, because running servers wrap new data keys under the keyring
    they hold: servers reload a rotated key file within
    MEMBERGUARD_KEYRING_HEARTBEAT_SECONDS, and `keys rewrap` refuses while one
    still wraps under an older KEK. With the env provider this prints the new
    keyring to deploy (and restart with) instead. Data is never re-encrypted;
    only the data keys are re-wrapped.
    """
    from vault.keys import EnvKeyring, LocalKeyFile

    settings = _settings()
    if settings.key_provider == "env":
        current = EnvKeyring(settings.keyring_env).load()
        click.echo(EnvKeyring.encode(current.with_new_kek()))
        click.echo(
            f"Deploy this as ${settings.keyring_env} on every server and restart them, "
            "then run `memberguard keys rewrap` (it refuses while one runs the old keyring).",
            err=True,
        )
        return
    key_file = LocalKeyFile(settings.resolved_key_path)
    rotated = key_file.load().with_new_kek()
    key_file.save(rotated)
    click.echo(f"KEK version {rotated.active_version} added to {key_file.path}.")
    click.echo(
        f"Servers load it within {settings.keyring_heartbeat_seconds} s; then run "
        "`memberguard keys rewrap` (it refuses while one still wraps under an older KEK)."
    )


@keys.command("rewrap")
def keys_rewrap() -> None:
    """Re-wrap every data key under the newest KEK version (resumable, batch by batch)."""
    _rewrap(_settings())


def _rewrap(settings: Settings) -> None:
    """Re-wrap batch by batch; each batch commits with the audit entry that records it."""
    from gate.operator import data_keys_by_version, rewrap_data_keys

    services = _services(settings)
    total = sum(data_keys_by_version(services).values())
    done = 0
    # A running server still on an older KEK is a DomainError (KeyringBehind):
    # MemberguardCLI.invoke prints it in one line, like every other refusal.
    with click.progressbar(length=total, label="re-wrapping data keys", file=sys.stderr) as bar:

        def advance(step: int) -> None:
            nonlocal done
            step = min(step, total - done)
            done += step
            bar.update(step)

        result = rewrap_data_keys(services, progress=advance)
    click.echo(f"re-wrapped {result.rewrapped} data keys; by KEK version now: {result.by_version}")


@keys.command("retire")
@click.argument("version", type=click.IntRange(min=1))
def keys_retire(version: int) -> None:
    """Destroy KEK VERSION once no data key and no running server needs it.

    Refused, with nothing changed, while VERSION is the active one, while any
    data key is still wrapped under it (run `memberguard keys rewrap`), or while
    a running server still wraps under it. Recorded in the audit log. With the
    env provider this prints the keyring without VERSION to deploy instead.
    """
    from gate.operator import retire_kek
    from vault.keys import EnvKeyring

    settings = _settings()
    retired = retire_kek(_services(settings), version)
    left = ", ".join(str(v) for v in sorted(retired.keyring.keks))
    if settings.key_provider == "env":
        click.echo(EnvKeyring.encode(retired.keyring))
        click.echo(
            f"KEK version {version} is wrapping no data key (audit entry {retired.seq}). "
            f"Deploy this keyring (versions {left}) as ${settings.keyring_env} on every server "
            "and restart them, then delete every copy of the old value, earlier versions in "
            f"your secret store included: until then KEK version {version} still exists.",
            err=True,
        )
        return
    click.echo(
        f"KEK version {version} destroyed: removed from {settings.resolved_key_path} "
        f"(audit entry {retired.seq}); versions left: {left}."
    )
    click.echo(
        f"Running servers drop it within {settings.keyring_heartbeat_seconds} s. Copies of "
        "the key file made before now (backups, other hosts) still hold it: destroy them too."
    )


# -- rights requests and holds (the operator acting as the DPO) ---------------


@main.group()
def rights() -> None:
    """Members' rights requests: the DPO's queue and decisions."""


def _request_line(request: dict[str, Any]) -> str:
    flag = "  OVERDUE" if request["overdue"] else ""
    recipients = request["recipients"]
    if request["type"] == "deletion" and recipients:
        # How many recipients confirmed they erased their copy (change feed).
        acked = sum(r["acknowledged_at"] is not None for r in recipients)
        flag += f"  acks {acked}/{len(recipients)}"
    return (
        f"{request['id']}  {request['type']:<10} {request['status']:<11} "
        f"due {request['due_at']}  member {request['member_id']}{flag}"
    )


@rights.command("list")
@click.option("--overdue", is_flag=True, help="Only open requests past their due date.")
@click.option(
    "--status",
    type=click.Choice(
        ["submitted", "in_progress", "on_hold", "completed", "rejected", "cancelled"]
    ),
    help="Only requests with this status.",
)
@click.option("--type", "request_type", type=click.Choice(["access", "correction", "deletion"]))
@click.option(
    "--awaiting-ack",
    is_flag=True,
    help="Only requests with a recipient that has not acknowledged its change-feed event "
    "(deletions).",
)
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document: the items.")
def rights_list(
    overdue: bool,
    status: str | None,
    request_type: str | None,
    awaiting_ack: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Requests by due date, earliest first (the first LIMIT)."""
    from gate.rights import request_queue
    from principals.actor import OPERATOR_DPO_ACTOR
    from rights.requests import QueueFilter
    from rights.states import RequestType, Status

    filters = QueueFilter(
        status=Status(status) if status else None,
        request_type=RequestType(request_type) if request_type else None,
        overdue=True if overdue else None,
        awaiting_ack=True if awaiting_ack else None,
    )
    page = request_queue(
        _services(_settings()), actor=OPERATOR_DPO_ACTOR, filters=filters, cursor=None, limit=limit
    )
    if as_json:
        click.echo(json.dumps(page.items, ensure_ascii=False, indent=2))
        return
    for request in page.items:
        click.echo(_request_line(request))
    if page.next_cursor is not None:
        click.echo(f"(more than {limit}; use --limit)", err=True)


@rights.command("show")
@click.argument("request_id")
def rights_show(request_id: str) -> None:
    """One request, with its history and recipients, as JSON."""
    from gate.rights import show_request
    from principals.actor import OPERATOR_DPO_ACTOR

    shown = show_request(
        _services(_settings()), actor=OPERATOR_DPO_ACTOR, rights_request=request_id
    )
    click.echo(json.dumps(shown, ensure_ascii=False, indent=2))


@rights.command("approve")
@click.argument("request_id")
def rights_approve(request_id: str) -> None:
    """Apply a waiting correction, or run a reviewed deletion (a hold still blocks it)."""
    from gate.rights import approve_request
    from principals.actor import OPERATOR_DPO_ACTOR

    shown = approve_request(
        _services(_settings()),
        actor=OPERATOR_DPO_ACTOR,
        rights_request=request_id,
        request_id=None,
    )
    click.echo(_request_line(shown.request))


@rights.command("reject")
@click.argument("request_id")
@click.option("--reason", required=True, help="Shown to the member; no facts about them.")
def rights_reject(request_id: str, reason: str) -> None:
    """Refuse an open request, saying why."""
    from gate.rights import reject_request
    from principals.actor import OPERATOR_DPO_ACTOR

    shown = reject_request(
        _services(_settings()),
        actor=OPERATOR_DPO_ACTOR,
        rights_request=request_id,
        reason=reason,
        request_id=None,
    )
    click.echo(_request_line(shown.request))


@rights.command("extend")
@click.argument("request_id")
@click.option("--reason", required=True, help="Shown to the member.")
@click.option(
    "--until",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The new last day (YYYY-MM-DD), within the policy's extension_max.",
)
def rights_extend(request_id: str, reason: str, until: datetime) -> None:
    """Extend an open request's deadline once, as the policy allows."""
    from gate.rights import extend_request_deadline
    from principals.actor import OPERATOR_DPO_ACTOR

    shown = extend_request_deadline(
        _services(_settings()),
        actor=OPERATOR_DPO_ACTOR,
        rights_request=request_id,
        reason=reason,
        until=until.date(),
        request_id=None,
    )
    click.echo(_request_line(shown.request))


@main.group()
def holds() -> None:
    """Legal holds: a member's deletion waits while one is active."""


def _hold_line(hold: dict[str, Any]) -> str:
    until = hold["until"] or "until released"
    state = "active" if hold["active"] else "ended"
    return f"{hold['id']}  member {hold['member_id']}  {state:<6}  {until}  {hold['reason']}"


@holds.command("add")
@click.argument("member")
@click.option("--reason", required=True, help="A case reference, not facts about the member.")
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]),
    help="When the hold ends by itself (a date: its start in the policy's time zone).",
)
def holds_add(member: str, reason: str, until: datetime | None) -> None:
    """Place a hold on MEMBER (prints its id)."""
    from zoneinfo import ZoneInfo

    from gate.holds import place_member_hold
    from principals.actor import OPERATOR_DPO_ACTOR

    services = _services(_settings())
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=ZoneInfo(services.policy.rights.timezone))
    changed = place_member_hold(
        services,
        actor=OPERATOR_DPO_ACTOR,
        member_id=member,
        reason=reason,
        until=until,
        request_id=None,
    )
    click.echo(changed.hold["id"])


@holds.command("list")
@click.argument("member", required=False)
@click.option("--json", "as_json", is_flag=True)
def holds_list(member: str | None, as_json: bool) -> None:
    """MEMBER's holds, or every member's active holds."""
    from gate.holds import list_active_holds, list_member_holds
    from principals.actor import OPERATOR_DPO_ACTOR

    services = _services(_settings())
    found = (
        list_member_holds(services, actor=OPERATOR_DPO_ACTOR, member_id=member)
        if member is not None
        else list_active_holds(services, actor=OPERATOR_DPO_ACTOR)
    )
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    for hold in found:
        click.echo(_hold_line(hold))


@holds.command("release")
@click.argument("member")
@click.argument("hold_id")
def holds_release(member: str, hold_id: str) -> None:
    """Release a hold; if it was MEMBER's last active one, their waiting deletion runs."""
    from gate.holds import release_member_hold
    from principals.actor import OPERATOR_DPO_ACTOR

    changed = release_member_hold(
        _services(_settings()),
        actor=OPERATOR_DPO_ACTOR,
        member_id=member,
        hold_id=hold_id,
        request_id=None,
    )
    click.echo(_hold_line(changed.hold))
    for request_id in changed.resumed:
        click.echo(f"deletion {request_id} ran: no hold blocks it any more")


# -- breach incidents (the operator acting as the DPO) -------------------------


class AwareDateTime(click.ParamType):
    """ISO 8601 with a time zone (``2026-11-30T09:00:00+08:00``, ``2026-11-30T01:00:00Z``).

    An incident's times are compared with the log's, which are UTC: a time
    without a zone would be a guess, so it is refused, as the API refuses it.
    """

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            moment = value
        else:
            try:
                moment = datetime.fromisoformat(str(value))
            except ValueError:
                self.fail(f"not an ISO 8601 time; {TIME_EXAMPLE}", param, ctx)
        if moment.utcoffset() is None:
            self.fail(f"has no time zone; {TIME_EXAMPLE}", param, ctx)
        return moment


TIME_EXAMPLE = "write e.g. 2026-11-30T09:00:00+08:00 or 2026-11-30T01:00:00Z"
AWARE_TIME = AwareDateTime()
# The default order of preference of the channels a breach notice may go by: e-mail first,
# since the notice must say what data, what happened, what was done, what the member can do
# and whom to ask, which an e-mail holds whole; SMS for members without an address.
DEFAULT_NOTICE_ORDER = ("email", "sms")
# The API's field names in the use cases' errors, as the CLI's options: the operator typed
# --to, not scope.to.
_OPTION_OF_FIELD = {
    "scope.client": "--client",
    "scope.from": "--from",
    "scope.to": "--to",
    "scope.member_ids": "--members",
    "detected_at": "--detected-at",
    "severity": "--severity",
    "at": "--at",
    "channels": "--channel",
    "format": "--format",
    "lang": "--lang",
}


def _text(limit_name: str) -> Any:
    """A callback refusing an empty text or one longer than ``breach.models.<limit_name>``
    (the column's length; the API's schema holds the same limit)."""

    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        from breach import models

        limit = getattr(models, limit_name)
        if value is not None and not 1 <= len(value) <= limit:
            raise click.BadParameter(f"1 to {limit:,} characters")
        return value

    return check


@contextmanager
def _dpo_services() -> Iterator[Any]:
    """The services for one incident command, with the use cases' input errors named by
    the options the operator typed; disposed of when the command ends.

    Logs (the notifier's "message sent", JSON by default) go to stderr, redacted as the
    server's are: stdout is the command's answer (a report, NDJSON), often piped.
    """
    from core.errors import InvalidInput
    from core.logging import configure_logging

    settings = _settings()
    services = _services(settings)
    configure_logging(
        log_format=settings.log_format,
        level=settings.log_level,
        personal_keys=services.policy.personal_field_names,
    )
    try:
        yield services
    except InvalidInput as exc:
        for field, option in _OPTION_OF_FIELD.items():
            if exc.detail.startswith(f"{field}: "):
                exc.detail = option + exc.detail[len(field) :]
                break
        raise
    finally:
        services.dispose()


def _minute(moment: str | None) -> str:
    """An incident's time (ISO 8601, in the policy's zone) to the minute, for a line."""
    if moment is None:
        return "-"
    return datetime.fromisoformat(moment).isoformat(sep=" ", timespec="minutes")


def _incident_line(view: dict[str, Any]) -> str:
    notified = view["authority_notified"]
    if notified is not None:
        met = "in time" if view["authority_deadline_met"] else "LATE"
        clock = f"authority notified {_minute(notified['at'])} ({met})"
    else:
        clock = f"authority due {_minute(view['authority_due_at'])}"
        if view["authority_overdue"]:
            clock += "  OVERDUE"
    affected = view["affected"]["members"]
    return f"{view['id']}  {view['status']:<18} {view['severity']:<8} {affected} affected  {clock}"


def _affected_summary(affected: dict[str, Any]) -> list[str]:
    """The counts an incident was opened with, for people: masked releases apart from
    clear ones, members shredded since (affected, but unreachable)."""
    lines = [f"affected: {affected['members']} members, {affected['records']} records"]
    views = affected["views"]
    fields = ", ".join(
        f"{name} {count} ({', '.join(f'{view} {n}' for view, n in views[name].items())})"
        for name, count in affected["fields"].items()
    )
    if fields:
        lines.append(f"fields:   {fields}")
    if affected["identity_only"]:
        lines.append(
            f"identity: {affected['identity_only']} members found by a lookup, no field released"
        )
    sensitive = affected["sensitive_members"]
    lines.append(f"sensitive data: {'yes, ' + str(sensitive) + ' members' if sensitive else 'no'}")
    if affected["shredded"]:
        lines.append(
            f"shredded: {affected['shredded']} members crypto-shredded since: affected, "
            "but nothing is left to reach them with"
        )
    return lines


def _notice_line(totals: dict[str, int]) -> str:
    return "notices:  " + ", ".join(
        f"{name.replace('_', ' ')} {totals[name]}"
        for name in ("sent", "queued", "failed", "unreachable", "not_asked")
    )


@main.group()
def incidents() -> None:
    """Personal data breaches: incidents, their affected members, the regulator's report
    and the members' notices (the operator acts as the DPO).

    Times are ISO 8601 with a time zone: 2026-11-30T09:00:00+08:00 or 2026-11-30T01:00:00Z.
    """


@incidents.command("list")
@click.option("--status", type=click.Choice([s.value for s in IncidentStatus]))
@click.option("--json", "as_json", is_flag=True, help="One JSON document: the items.")
def incidents_list(status: str | None, as_json: bool) -> None:
    """Incidents by the authority's deadline, earliest first (times in the policy's zone)."""
    from gate.incidents import list_incidents
    from principals.actor import OPERATOR_DPO_ACTOR

    with _dpo_services() as services:
        items = list_incidents(
            services,
            actor=OPERATOR_DPO_ACTOR,
            status=IncidentStatus(status) if status else None,
        )
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    if not items:
        click.echo("no incidents", err=True)
        return
    header = ("ID", "STATUS", "SEVERITY", "DETECTED", "AUTHORITY DUE", "OVERDUE", "AFFECTED")
    rows = [
        (
            item["id"],
            item["status"],
            item["severity"],
            _minute(item["detected_at"]),
            _minute(item["authority_due_at"]),
            "yes" if item["authority_overdue"] else "no",
            str(item["affected_members"]),
        )
        for item in items
    ]
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    titles = ["TITLE", *(" ".join(item["title"].split()) for item in items)]
    for row, title in zip((header, *rows), titles, strict=True):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells) + "  " + title)


@incidents.command("show")
@click.argument("incident_id")
def incidents_show(incident_id: str) -> None:
    """One incident as JSON (the API's shape), with its notices' totals."""
    from gate.incidents import show_incident
    from principals.actor import OPERATOR_DPO_ACTOR

    with _dpo_services() as services:
        shown = show_incident(services, actor=OPERATOR_DPO_ACTOR, incident_id=incident_id)
    click.echo(json.dumps(shown, ensure_ascii=False, indent=2))


@incidents.command("open")
@click.option("--title", required=True, callback=_text("TITLE_LENGTH"))
@click.option(
    "--description",
    required=True,
    callback=_text("TEXT_LENGTH"),
    help="What happened, for the authority: kept with the incident, never in the audit log.",
)
@click.option(
    "--detected-at",
    "detected_at",
    required=True,
    type=AWARE_TIME,
    help="When the organisation became aware (ISO 8601 with a zone, not in the future); "
    "the authority's deadline counts from it.",
)
@click.option("--severity", required=True, type=click.Choice(SEVERITIES))
@click.option(
    "--client",
    metavar="NAME",
    help="Scope: a compromised client (name or id): the members the log shows were "
    "released to it from --from to --to.",
)
@click.option("--from", "start", type=AWARE_TIME, help="With --client: the window's start.")
@click.option(
    "--to", "end", type=AWARE_TIME, help="With --client: the window's end (default: now)."
)
@click.option(
    "--members",
    "member_ids",
    multiple=True,
    metavar="ID",
    help="Scope: these members, with every field the vault holds (repeatable, or comma-separated).",
)
@click.option(
    "--all", "everyone", is_flag=True, help="Scope: every member (the vault or its keys)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the incident as JSON.")
def incidents_open(
    title: str,
    description: str,
    detected_at: datetime,
    severity: str,
    client: str | None,
    start: datetime | None,
    end: datetime | None,
    member_ids: tuple[str, ...],
    everyone: bool,
    as_json: bool,
) -> None:
    """Open an incident; its affected members are computed from the audit log now.

    Give one scope: --client NAME --from TIME [--to TIME], --members ID... or --all.
    TIME is ISO 8601 with a time zone: 2026-11-30T09:00:00+08:00 or 2026-11-30T01:00:00Z.
    """
    from gate.incidents import open_incident
    from principals.actor import OPERATOR_DPO_ACTOR

    given = [
        name
        for name, on in (("--client", client), ("--members", member_ids), ("--all", everyone))
        if on
    ]
    if len(given) != 1:
        raise click.UsageError(
            "give one scope: --client NAME --from TIME, --members ID... or --all"
            + (f" (not {' and '.join(given)})" if given else "")
        )
    if client is None and (start is not None or end is not None):
        raise click.UsageError("--from and --to go with --client")
    scope: dict[str, Any]
    if client is not None:
        if start is None:
            raise click.UsageError("--client needs --from: when the client was compromised")
        scope = {"kind": "client", "client": client, "from": start}
        if end is not None:
            scope["to"] = end
    elif member_ids:
        ids = [part for given_ids in member_ids for part in given_ids.split(",") if part]
        scope = {"kind": "members", "member_ids": ids}
    else:
        scope = {"kind": "all"}
    with _dpo_services() as services:
        opened = open_incident(
            services,
            actor=OPERATOR_DPO_ACTOR,
            title=title,
            description=description,
            detected_at=detected_at,
            severity=severity,
            scope=scope,
            request_id=None,
        )
    if as_json:
        click.echo(json.dumps(opened, ensure_ascii=False, indent=2))
        return
    click.echo(_incident_line(opened))
    for line in _affected_summary(opened["affected"]):
        click.echo(line)


@incidents.command("assess")
@click.argument("incident_id")
@click.option(
    "--consequences",
    required=True,
    callback=_text("TEXT_LENGTH"),
    help="What the breach likely means for members.",
)
@click.option(
    "--measures",
    required=True,
    callback=_text("TEXT_LENGTH"),
    help="What was done, or is proposed, about it.",
)
@click.option(
    "--advice",
    required=True,
    callback=_text("TEXT_LENGTH"),
    help="What members can do to protect themselves.",
)
def incidents_assess(incident_id: str, consequences: str, measures: str, advice: str) -> None:
    """Record (or revise) the assessment: the report's and the members' notices' substance."""
    from gate.incidents import assess_incident
    from principals.actor import OPERATOR_DPO_ACTOR

    with _dpo_services() as services:
        shown = assess_incident(
            services,
            actor=OPERATOR_DPO_ACTOR,
            incident_id=incident_id,
            consequences=consequences,
            measures=measures,
            member_advice=advice,
            request_id=None,
        )
    click.echo(_incident_line(shown))


@incidents.command("authority-notified")
@click.argument("incident_id")
@click.option(
    "--at",
    "at",
    required=True,
    type=AWARE_TIME,
    help="When the authority was told (ISO 8601 with a zone; not in the future).",
)
@click.option("--authority", required=True, callback=_text("AUTHORITY_LENGTH"))
@click.option(
    "--reference", callback=_text("REFERENCE_LENGTH"), help="The authority's case number."
)
def incidents_authority_notified(
    incident_id: str, at: datetime, authority: str, reference: str | None
) -> None:
    """Record that the authority was told, once (GDPR Article 33, PIPL Article 57)."""
    from gate.incidents import record_authority_notified
    from principals.actor import OPERATOR_DPO_ACTOR

    with _dpo_services() as services:
        shown = record_authority_notified(
            services,
            actor=OPERATOR_DPO_ACTOR,
            incident_id=incident_id,
            at=at,
            authority=authority,
            reference=reference,
            request_id=None,
        )
    click.echo(_incident_line(shown))


@incidents.command("notify-members")
@click.argument("incident_id")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    type=click.Choice(NOTICE_CHANNELS),
    help="A channel a notice may go by, in order of preference (repeatable; default: "
    "email, then sms: an e-mail holds the whole notice).",
)
def incidents_notify_members(incident_id: str, channels: tuple[str, ...]) -> None:
    """Queue one notice per affected member and send them now; print the totals.

    Each member gets one notice, by the first channel they have a contact for. Asking
    again sends only what was never sent (new members never queued, notices the transport
    refused): no member gets two.
    """
    from gate.incidents import notify_members
    from principals.actor import OPERATOR_DPO_ACTOR

    with _dpo_services() as services:
        totals = notify_members(
            services,
            actor=OPERATOR_DPO_ACTOR,
            incident_id=incident_id,
            channels=list(channels or DEFAULT_NOTICE_ORDER),
            request_id=None,
        )
    click.echo(_notice_line(totals))
    if totals["unreachable"]:
        click.echo(
            f"{totals['unreachable']} affected members cannot be told: crypto-shredded, or "
            "without a contact on these channels (`incidents affected` says which)",
            err=True,
        )
    if totals["failed"]:
        click.echo(
            f"{totals['failed']} notices failed: those the transport refused are sent when "
            "you run this again; those interrupted by a crash are never sent again",
            err=True,
        )


@incidents.command("affected")
@click.argument("incident_id")
def incidents_affected(incident_id: str) -> None:
    """The affected members as NDJSON, one per line; recorded in the log.

    Each line: {"member_id", "fields", "views", "identity", "records", "shredded",
    "notice", "notice_failure"}, by member id.
    """
    from gate.incidents import affected_members
    from principals.actor import OPERATOR_DPO_ACTOR

    with _dpo_services() as services:
        listed = affected_members(
            services, actor=OPERATOR_DPO_ACTOR, incident_id=incident_id, request_id=None
        )
        for item in listed.lines:
            click.echo(json.dumps(item, ensure_ascii=False, separators=(",", ":")))


@incidents.command("report")
@click.argument("incident_id")
@click.option(
    "--format",
    "report_format",
    type=click.Choice(REPORT_FORMATS),
    default="json",
    show_default=True,
    help="pdf needs the pdf extra (memberguard[pdf]) and, for Chinese, a CJK font.",
)
@click.option(
    "--lang",
    type=click.Choice(REPORT_LOCALES),
    help="The report's language (default: the policy's jurisdiction's; zh-CN under CN).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file (default: standard output).",
)
def incidents_report(
    incident_id: str, report_format: str, lang: str | None, out: Path | None
) -> None:
    """The regulator's report (GDPR Article 33(3), PIPL Article 57); recorded in the log.

    PDF needs the pdf extra (memberguard[pdf]) and, for Chinese, a CJK font on this host
    (Debian: fonts-wqy-microhei or fonts-noto-cjk); without --out it is written only to
    a pipe or a file, never to a terminal.
    """
    from gate.incidents import incident_report
    from principals.actor import OPERATOR_DPO_ACTOR

    # Refused before the report is made: making it is an audit entry.
    if out is None and report_format == "pdf" and sys.stdout.isatty():
        raise click.UsageError("a PDF is binary: write it with --out FILE, or redirect stdout")
    if out is not None and not out.parent.is_dir():
        raise click.BadParameter(f"no directory {out.parent}", param_hint="--out")
    with _dpo_services() as services:
        report = incident_report(
            services,
            actor=OPERATOR_DPO_ACTOR,
            incident_id=incident_id,
            report_format=report_format,
            locale=lang,
            request_id=None,
        )
    if out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(report.body)
        sys.stdout.buffer.flush()
        return
    try:
        out.write_bytes(report.body)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or type(exc).__name__}")
    click.echo(
        f"report written to {out} ({len(report.body):,} bytes; audit entry {report.audit_seq})"
    )


@incidents.command("close")
@click.argument("incident_id")
@click.option(
    "--summary",
    required=True,
    callback=_text("TEXT_LENGTH"),
    help="How the incident ended; shown in the report.",
)
def incidents_close(incident_id: str, summary: str) -> None:
    """Close an incident; nothing moves it afterwards."""
    from gate.incidents import close_incident
    from principals.actor import OPERATOR_DPO_ACTOR

    with _dpo_services() as services:
        shown = close_incident(
            services,
            actor=OPERATOR_DPO_ACTOR,
            incident_id=incident_id,
            summary=summary,
            request_id=None,
        )
    click.echo(_incident_line(shown))


# -- policy -------------------------------------------------------------------


@main.group()
def policy() -> None:
    """Policies as code."""


@policy.command("check")
@click.argument("path", required=False, type=click.Path(path_type=Path))
def policy_check(path: Path | None) -> None:
    """Validate a policy directory or file (default: the configured policy)."""
    from policies import PolicyError, load_policy

    target = path if path is not None else _settings().policy_path
    try:
        loaded = load_policy(target)
    except PolicyError as exc:
        for problem in exc.problems:
            click.secho(problem, fg="red", err=True)
        sys.exit(1)
    click.echo(f"policy OK: {len(loaded.fields)} fields, {len(loaded.purposes)} purposes")
    click.echo(f"version:   {loaded.version}")
    for pid, spec in loaded.purposes.items():
        extra = (
            f", separate consent ({spec.separate_consent_ground})" if spec.separate_consent else ""
        )
        shown = ", ".join(f"{f}:{v}" for f, v in spec.fields.items())
        click.echo(f"  {pid:<22} {spec.legal_basis}{extra}  [{shown}]")
    for warning in loaded.anonymity_warnings():
        click.secho(f"warning: {warning}", fg="yellow", err=True)


# -- audit --------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The tamper-evident audit log."""


def _progress(label: str) -> Any:
    """A progress callback drawing on a terminal, silent in logs and pipes."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        click.echo(f"\r{label} {done:,}/{total:,}", nl=False, err=True)

    return show


def _deployment_verifier_key(settings: Settings) -> str | None:
    from audit.signer import SignerError
    from gate.context import load_notary

    try:
        return load_notary(settings).verifier_key
    except SignerError:
        return None


@audit.command("verify")
@click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Verify an export directory offline (no database, no private key).",
)
@click.option(
    "--pubkey",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="File with the log's verifier key (required with --export).",
)
@click.option(
    "--checkpoint",
    "kept_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A signed checkpoint you kept (repeatable): the log must extend it.",
)
def audit_verify(
    export_dir: Path | None, pubkey: Path | None, kept_files: tuple[Path, ...]
) -> None:
    """Recompute the log from the stored bytes; name the first bad entry and why.

    Online (default): the chain, the Merkle tree, every checkpoint's root and
    signature, the query columns and member rows, against the database; and
    the log must extend every checkpoint published to the checkpoint directory.
    With --export DIR --pubkey FILE: the same from an export, offline.
    With --checkpoint FILE (either way): the log must extend that checkpoint too.
    """
    from audit.offline import verify_export
    from audit.online import verify_log
    from core.db import build_engine, session_factory
    from gate.context import check_database

    settings = _settings()
    try:
        key = pubkey.read_text(encoding="ascii").strip() if pubkey is not None else None
    except UnicodeDecodeError:
        click.secho(
            "FAILED: the public key is not a verifier key: not ASCII text", fg="red", err=True
        )
        sys.exit(1)
    kept = []
    for path in kept_files:
        try:  # bytes, not text mode: universal newlines would undo a tampered "\r"
            kept.append((str(path), path.read_bytes().decode("utf-8")))
        except UnicodeDecodeError:
            click.secho(f"FAILED: checkpoint {path} is not UTF-8 text", fg="red", err=True)
            sys.exit(1)
    if export_dir is not None:
        if key is None:
            _fail("--export needs --pubkey: the verifier key you obtained independently")
            return
        offline = verify_export(
            export_dir, verifier_key=key, progress=_progress("verified"), kept=kept
        )
        if sys.stderr.isatty():
            click.echo("", err=True)
        if offline.ok:
            click.echo(
                f"OK: {offline.size} entries, {offline.checkpoints} signed checkpoints, "
                f"head {offline.head_hash}"
            )
            _echo_held(0, len(kept))
            return
        click.secho(f"FAILED: {offline.failure}", fg="red", err=True)
        sys.exit(1)

    check_database(settings)
    if key is None:
        key = _deployment_verifier_key(settings)
        if key is None and kept:
            _fail("--checkpoint needs the log's verifier key: give it with --pubkey FILE")
            return
        if key is None:
            click.echo(
                "note: no signing key here; checkpoint signatures not checked (--pubkey)", err=True
            )
    engine = build_engine(settings.resolved_database_url)
    session = session_factory(engine, read_only=True)()
    try:
        report = verify_log(
            session,
            progress=_progress("verified"),
            verifier_key=key,
            published=settings.resolved_checkpoint_dir,
            kept=kept,
        )
    finally:
        session.close()
        engine.dispose()
    if sys.stderr.isatty():
        click.echo("", err=True)
    if report.ok:
        click.echo(f"OK: {report.size} entries, head {report.head_hash}")
        _echo_held(report.published, report.kept)
        return
    where = f" at entry {report.first_bad_seq}" if report.first_bad_seq is not None else ""
    click.secho(f"FAILED{where}: {report.reason}", fg="red", err=True)
    sys.exit(1)


def _echo_held(published: int, kept: int) -> None:
    held = [
        f"{count} {what} checkpoint{'s' if count != 1 else ''}"
        for count, what in ((published, "published"), (kept, "kept"))
        if count
    ]
    if held:
        click.echo(f"the log extends the {' and the '.join(held)}")


@audit.command("public-key")
def audit_public_key() -> None:
    """Print the checkpoint verifier key (C2SP note format) for auditors to keep."""
    from gate.context import load_notary

    click.echo(load_notary(_settings()).verifier_key)


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Cut a signed checkpoint now (if the log grew since the last one) and print it."""
    from gate.operator import cut_checkpoint

    note = cut_checkpoint(_services(_settings()))
    if note is None:
        _fail("the log is empty: nothing to checkpoint")
        return
    click.echo(note, nl=False)


@audit.command("prove")
@click.argument("seq", type=click.IntRange(min=1))
@click.option(
    "--size", type=click.IntRange(min=1), help="A checkpointed tree size (default: latest)."
)
def audit_prove(seq: int, size: int | None) -> None:
    """Print the inclusion proof of entry SEQ as JSON (with the entry and the signed checkpoint)."""
    from audit.proofs import inclusion

    services = _services(_settings())
    with services.reading() as session:
        click.echo(json.dumps(inclusion(session, seq=seq, size=size), indent=2))


@audit.command("consistency")
@click.argument("old", type=click.IntRange(min=1))
@click.argument("new", type=click.IntRange(min=1))
def audit_consistency(old: int, new: int) -> None:
    """Print the consistency proof between checkpointed sizes OLD and NEW as JSON."""
    from audit.proofs import consistency

    services = _services(_settings())
    with services.reading() as session:
        click.echo(json.dumps(consistency(session, old=old, new=new), indent=2))


@audit.command("export")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
def audit_export(directory: Path) -> None:
    """Write the log (entries, signed checkpoints, public key) to DIRECTORY for offline checks."""
    from audit.offline import export_log

    services = _services(_settings())
    if directory.exists() and any(directory.iterdir()):
        _fail(f"{directory} is not empty")
        return
    with services.reading() as session:
        report = export_log(
            session,
            directory,
            verifier_key=services.notary.verifier_key,
            progress=_progress("exported"),
        )
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(
        f"exported {report.size} entries and {report.checkpoints} checkpoints to {directory}"
    )
    click.echo(f"verify with: memberguard audit verify --export {directory} --pubkey KEYFILE")


if __name__ == "__main__":
    main()
