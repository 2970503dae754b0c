"""The `siyu` command line: serve, worker, db, demo, apikeys, users, channels."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn, cast

import typer
import uvicorn
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url

from siyu import migrate, runtime
from siyu import models as _models  # noqa: F401  (every table known to the metadata)
from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.channels.models import ChannelKind, OaType
from siyu.config import get_settings
from siyu.db import get_sessionmaker, unit_of_work
from siyu.errors import SiyuError
from siyu.ingest import processor as ingest_processor
from siyu.outbox import service as outbox_service
from siyu.warehouse.cli import segments_compute, warehouse_app

app = typer.Typer(help="siyu: private-domain CRM and customer data platform", no_args_is_help=True)
db_app = typer.Typer(help="Database schema", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys (write keys for sources, bearer keys for the API)", no_args_is_help=True
)
users_app = typer.Typer(help="Console users", no_args_is_help=True)
org_app = typer.Typer(help="Regions and stores", no_args_is_help=True)
profiles_app = typer.Typer(help="A person's data (PIPL): export and erasure", no_args_is_help=True)
channels_app = typer.Typer(
    help="WeChat channel accounts: Official Accounts, WeCom, Mini Programs", no_args_is_help=True
)
channels_add = typer.Typer(
    help="Configure a channel account (secrets are encrypted and never shown again)", no_args_is_help=True
)
channels_app.add_typer(channels_add, name="add")
lifecycle_app = typer.Typer(help="Lifecycle stages and predicted value", no_args_is_help=True)
segments_app = typer.Typer(help="Segments", no_args_is_help=True)
app.add_typer(lifecycle_app, name="lifecycle")
app.add_typer(segments_app, name="segments")
app.add_typer(warehouse_app, name="warehouse")
segments_app.command("compute")(segments_compute)
app.add_typer(channels_app, name="channels")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="apikeys")
app.add_typer(users_app, name="users")
app.add_typer(org_app, name="org")
app.add_typer(profiles_app, name="profiles")
console = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


# Commands that make their own database (db upgrade, the demo) or need none.
_NO_SCHEMA_CHECK = frozenset({"db", "demo"})


@app.callback()
def _check_database(ctx: typer.Context) -> None:
    """siyu: private-domain CRM and customer data platform."""
    if ctx.invoked_subcommand is None or ctx.invoked_subcommand in _NO_SCHEMA_CHECK:
        return
    problem = migrate.schema_problem(get_settings().database_url)
    if problem is not None:
        _fail(problem)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the database named by SIYU_DATABASE_URL."""
    url = get_settings().database_url
    migrate.upgrade(url, revision)
    console.print(f"database at [bold]{_safe(url)}[/bold] is at revision {revision}")


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message when host:port cannot be listened on (another server holds it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        _fail(f"--host {host}: {exc.strerror or exc}")
    family, kind, proto, _, address = infos[0]
    probe = socket.socket(family, kind, proto)
    try:
        # The same option uvicorn sets: a port in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    except OSError as exc:
        _fail(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another siyu or server running? "
            "choose another with --port, or PORT=8001 with make demo)"
        )
    finally:
        probe.close()


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (use 1 with SQLite)")] = 1,
) -> None:
    """Serve the API and the console."""
    _check_port(host, port)
    uvicorn.run(
        "siyu.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="warning"
    )


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run what is due, then exit")] = False,
) -> None:
    """Run background jobs: the ingest queue, the outbox (messages, WeChat calls), scheduled runs."""
    from siyu.journeys import tasks as journey_tasks
    from siyu.lifecycle.service import Run
    from siyu.loyalty.tasks import Scheduled
    from siyu.messaging import tasks as message_tasks
    from siyu.schedule import Scheduler

    settings = get_settings()
    runtime.tune(settings)
    runtime.configure_logging()
    factory = get_sessionmaker()
    scheduler = Scheduler(settings)
    console.print("worker started")
    while True:
        drained = ingest_processor.drain(settings) if once else ingest_processor.run_once(settings)
        done = outbox_service.run_once(factory, settings.worker_batch_size)
        ran = scheduler.run_due(factory)
        moved = journey_tasks.run_engine(factory, settings)
        sent = message_tasks.run_sender(factory, settings)
        if once:
            parts = [
                f"stored {drained.events} queued event(s)",
                f"ran {done} job(s)",
                f"moved {moved} customer(s) through journeys",
                f"sent {sent} message(s)",
            ]
            loyalty, lifecycle = ran.get("loyalty"), ran.get("lifecycle")
            if isinstance(loyalty, Scheduled):
                parts.append(
                    f"released {loyalty.released} and expired {loyalty.expired} points lot(s), "
                    f"reviewed {loyalty.reviewed} tier(s)"
                )
            if isinstance(lifecycle, Run):
                parts.append(f"staged {lifecycle.profiles} customer(s) ({lifecycle.changed} changed)")
            parts.append(f"recomputed {len(cast(dict[int, Any], ran.get('segments') or {}))} segment(s)")
            console.print(", ".join(parts))
            return
        if done == 0 and drained.batches == 0 and moved == 0 and sent == 0:
            time.sleep(settings.worker_poll_seconds)


StoreOption = Annotated[
    str | None, typer.Option(help="Store code: required for store_manager and sales_associate")
]
RegionOption = Annotated[str | None, typer.Option(help="Region code: required for regional_manager")]


@keys_app.command("create")
def apikeys_create(
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'Mini Program'")],
    role: Annotated[
        Role | None, typer.Option(help="source for a write key; admin, hq, … for API access")
    ] = None,
    store: StoreOption = None,
    region: RegionOption = None,
    user: Annotated[
        str | None, typer.Option(help="A console user the key acts as (their role, scope, alerts and tasks)")
    ] = None,
) -> None:
    """Create an API key; the key is printed alone on the last line."""
    try:
        with unit_of_work() as session:
            key, secret = auth_service.create_api_key_for(
                session, name=name, role=role, store=store, region=region, username=user
            )
            key_id, key_role = key.id, key.role
    except SiyuError as exc:
        _fail(_as_options(exc.message))
    console.print(f"created {key_role} key #{key_id} '{escape(name)}'")
    print(secret)


@keys_app.command("list")
def apikeys_list() -> None:
    """Every API key: id, name, role, scope, prefix, last use, revoked (never the secret)."""
    from rich.table import Table

    with unit_of_work() as session:
        keys = auth_service.list_api_keys(session)
        scopes = _org().scope_namer(session)
        users = {u.id: u.username for u in auth_service.list_users(session)}
        table = Table("id", "name", "role", "scope", "prefix", "last used", "revoked")
        for k in keys:
            scope = users.get(k.user_id, "") if k.user_id else scopes(k.region_id, k.store_id)
            table.add_row(
                str(k.id),
                escape(k.name),
                str(k.role),
                escape(("user " + scope) if k.user_id else scope),
                k.prefix + "…",
                k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "never",
                k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "",
            )
    Console().print(table)


@keys_app.command("revoke")
def apikeys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (siyu apikeys list)")]) -> None:
    """Revoke an API key: it stops working at once, for good."""
    try:
        with unit_of_work() as session:
            key = auth_service.revoke_api_key(session, auth_service.get_api_key_or_raise(session, key_id))
            name = key.name
    except SiyuError as exc:
        _fail(exc.message)
    console.print(f"revoked key #{key_id} '{escape(name)}'")


def _org() -> Any:
    from siyu.clienteling import org  # imported when needed: the CLI starts fast

    return org


def _as_options(message: str) -> str:
    """A service's field name as the CLI's option (user: … -> --user: …)."""
    head, sep, rest = message.partition(": ")
    if sep and all(part.strip().isidentifier() for part in head.split(",")):
        return ", ".join("--" + part.strip().replace("_", "-") for part in head.split(",")) + sep + rest
    return message


def _password(given: str | None, generate: bool, prompt: str) -> str:
    """The password given, generated or typed; both --password and --generate is an error, not a guess."""
    if given is not None and generate:
        _fail("--password, --generate: give a password or ask for one to be generated, not both")
    if given is not None:
        return given
    return secrets.token_urlsafe(12) if generate else getpass.getpass(prompt)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Option()],
    role: Annotated[Role, typer.Option()],
    password: Annotated[
        str | None, typer.Option(help="Asked for when omitted; generated with --generate")
    ] = None,
    generate: Annotated[bool, typer.Option(help="Generate a password and print it")] = False,
    display_name: Annotated[str, typer.Option()] = "",
    store: StoreOption = None,
    region: RegionOption = None,
    wecom_userid: Annotated[
        str | None, typer.Option(help="A sales associate's WeCom UserID (how WeCom events name them)")
    ] = None,
) -> None:
    """Create a console user; store and region roles name their store or region."""

    password = _password(password, generate, "password: ")
    try:
        with unit_of_work() as session:
            user = auth_service.create_user_for(
                session,
                username=username,
                password=password,
                role=role,
                display_name=display_name,
                store=store,
                region=region,
                wecom_userid=wecom_userid,
            )
            user_id = user.id
    except SiyuError as exc:
        _fail(exc.message)
    console.print(f"created user #{user_id} {escape(username)} ({role})")
    if generate:
        print(password)


@users_app.command("list")
def users_list() -> None:
    """Every console user: username, role, scope, WeCom UserID, active."""
    from rich.table import Table

    with unit_of_work() as session:
        scopes = _org().scope_namer(session)
        table = Table("id", "username", "name", "role", "scope", "wecom userid", "active")
        for u in auth_service.list_users(session):
            table.add_row(
                str(u.id),
                escape(u.username),
                escape(u.display_name),
                str(u.role),
                scopes(u.region_id, u.store_id),
                u.wecom_userid or "",
                "yes" if u.is_active else "[red]disabled[/red]",
            )
    Console().print(table)


def _update_user(username: str, **changes: Any) -> str:
    """The user's username as stored (whatever case was typed), once changed."""
    try:
        with unit_of_work() as session:
            user = auth_service.get_user_by_username_or_raise(session, username)
            auth_service.update_user(session, user, **changes)
            return user.username
    except SiyuError as exc:
        _fail(exc.message)


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument()]) -> None:
    """Disable a user: no more login, their sessions end, and keys acting as them are revoked."""
    name = _update_user(username, active=False)
    console.print(f"disabled {escape(name)}: signed out, keys acting as them revoked")


@users_app.command("enable")
def users_enable(username: Annotated[str, typer.Argument()]) -> None:
    """Let a disabled user log in again (revoked keys stay revoked: create new ones)."""
    name = _update_user(username, active=True)
    console.print(f"enabled {escape(name)}")


@users_app.command("reset-password")
def users_reset_password(
    username: Annotated[str, typer.Argument()],
    password: Annotated[
        str | None, typer.Option(help="Asked for when omitted; generated with --generate")
    ] = None,
    generate: Annotated[bool, typer.Option(help="Generate a password and print it")] = False,
) -> None:
    """Set a new password; the user's open console sessions end."""
    password = _password(password, generate, "new password: ")
    name = _update_user(username, password=password)
    console.print(f"new password set for {escape(name)}; their sessions have ended")
    if generate:
        print(password)


def _cli_principal() -> Any:
    """The command line acts as an admin (whoever runs it holds the database), named in the audit log."""
    from siyu.auth.principal import Principal

    return Principal(kind="cli", id=0, name=os.environ.get("USER", "cli"), role=Role.admin)


@profiles_app.command("export")
def profiles_export(
    profile_id: Annotated[int, typer.Argument(help="The customer's profile id")],
    out: Annotated[Path | None, typer.Option(help="Write to this file (default: profile-ID.json)")] = None,
) -> None:
    """Everything held about one person, unmasked, as JSON (a PIPL access request); audited."""
    import orjson

    from siyu.profiles import privacy
    from siyu.profiles import service as profiles_service

    target = out or Path(f"profile-{profile_id}.json")
    try:
        with unit_of_work() as session:
            principal = _cli_principal()
            profile = profiles_service.get_or_raise(session, principal, profile_id)
            data = privacy.export(session, profile)
            counts = {k: len(v) for k, v in data.items() if isinstance(v, list)}
            auth_service.audit(session, principal, "profile.export", "profile", profile.id, counts)
            target.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    except SiyuError as exc:
        _fail(exc.message)
    console.print(
        f"wrote {escape(str(target))}: {counts['events']} events, {counts['identifiers']} identifiers"
    )


@profiles_app.command("erase")
def profiles_erase(
    profile_id: Annotated[int, typer.Argument(help="The customer's profile id")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: erasure cannot be undone")] = False,
) -> None:
    """Erase one person's personal data for good, keeping counts and the ledger (PIPL); audited."""
    from siyu.profiles import privacy
    from siyu.profiles import service as profiles_service

    if not yes:
        _fail(
            f"erasing profile {profile_id} cannot be undone: run again with --yes (export it first if asked)"
        )
    try:
        with unit_of_work() as session:
            principal = _cli_principal()
            profile = profiles_service.get_or_raise(session, principal, profile_id)
            erased = privacy.erase(session, profile)
            auth_service.audit(session, principal, "profile.erase", "profile", profile.id, erased)
    except SiyuError as exc:
        _fail(exc.message)
    console.print(f"erased profile {profile_id}: " + ", ".join(f"{n} {k}" for k, n in erased.items()))


@org_app.command("add-region")
def org_add_region(
    code: Annotated[str, typer.Option(help="Short code, e.g. EAST")],
    name: Annotated[str, typer.Option(help="e.g. 'East China'")],
) -> None:
    """Add a sales region."""
    from siyu.clienteling import org

    try:
        with unit_of_work() as session:
            org.create_region(session, code=code, name=name)
    except SiyuError as exc:
        _fail(exc.message)
    console.print(f"added region {escape(code)}")


@org_app.command("add-store")
def org_add_store(
    code: Annotated[str, typer.Option(help="The code POS exports and events use (home_store)")],
    name: Annotated[str, typer.Option()],
    region: Annotated[str, typer.Option(help="The region's code")],
    city: str = "",
) -> None:
    """Add a store to a region."""
    from siyu.clienteling import org

    try:
        with unit_of_work() as session:
            org.create_store(session, code=code, name=name, region=region, city=city)
    except SiyuError as exc:
        _fail(exc.message)
    console.print(f"added store {escape(code)}")


@org_app.command("import-stores")
def org_import_stores(
    file: Annotated[Path, typer.Argument(help="UTF-8 CSV: code, name, city, region[, region_name]")],
) -> None:
    """Create or update stores (and their regions) from a CSV; all rows or none."""
    from siyu.clienteling import org

    try:
        with unit_of_work() as session:
            done = org.import_stores(session, file)
    except SiyuError as exc:
        _fail(exc.message)
    console.print(
        f"stores: {done.created} created, {done.updated} updated, {done.unchanged} unchanged; "
        f"{done.regions_created} region(s) created"
    )


@org_app.command("list")
def org_list() -> None:
    """Regions and stores, with their codes."""
    from rich.table import Table

    from siyu.clienteling import org

    table = Table("region", "store", "name", "city")
    with unit_of_work() as session:
        regions = {r.id: r for r in org.list_regions(session)}
        stores = org.list_stores(session)
        for r in regions.values():
            table.add_row(r.code, "", r.name, "")
            for store in stores:
                if store.region_id == r.id:
                    table.add_row("", store.code, store.name, store.city)
    Console().print(table)


def _secret(value: str | None, what: str) -> str:
    """The secret given, else asked for without echo (so it stays out of the shell history)."""
    return value if value is not None else getpass.getpass(f"{what}: ")


def _add_channel(**fields: Any) -> None:
    from siyu.channels import service as channels_service
    from siyu.channels.api import callback_path

    try:
        with unit_of_work() as session:
            account = channels_service.create_account(session, **fields)
            path = callback_path(account)
            label = f"{account.kind} account #{account.id} {account.name!r} ({account.app_id})"
    except SiyuError as exc:
        _fail(exc.message)
    console.print(f"configured {escape(label)}; its secrets are stored encrypted")
    if path:
        console.print(f"callback URL: https://<your siyu host>{escape(path)}")


SecretOpt = Annotated[str | None, typer.Option(help="Asked for without echo when omitted")]


@channels_add.command("oa")
def channels_add_oa(
    name: Annotated[str, typer.Option(help="Slug for the callback URL, e.g. tos-oa")],
    app_id: Annotated[str, typer.Option(help="AppID")],
    oa_type: Annotated[OaType, typer.Option("--type", help="service or subscription")],
    token: Annotated[str, typer.Option(help="The callback Token set in the WeChat console")],
    aes_key: Annotated[str | None, typer.Option(help="EncodingAESKey (43 characters), for safe mode")] = None,
    secret: SecretOpt = None,
) -> None:
    """Configure an Official Account."""
    _add_channel(
        kind=ChannelKind.oa,
        name=name,
        app_id=app_id,
        oa_type=oa_type,
        token=token,
        aes_key_text=aes_key,
        secret=_secret(secret, "AppSecret"),
    )


@channels_add.command("wecom")
def channels_add_wecom(
    name: Annotated[str, typer.Option(help="Slug for the callback URL, e.g. tos-wecom")],
    corp_id: Annotated[str, typer.Option(help="CorpID")],
    token: Annotated[str, typer.Option(help="The callback Token")],
    aes_key: Annotated[str, typer.Option(help="EncodingAESKey (43 characters)")],
    agent_id: Annotated[str | None, typer.Option(help="AgentId of the self-built app")] = None,
    welcome_text: Annotated[
        str, typer.Option(help="Welcome message sent when a customer adds an associate")
    ] = "",
    secret: SecretOpt = None,
) -> None:
    """Configure a WeCom corp (customer contact)."""
    _add_channel(
        kind=ChannelKind.wecom,
        name=name,
        app_id=corp_id,
        token=token,
        aes_key_text=aes_key,
        agent_id=agent_id,
        welcome_text=welcome_text,
        secret=_secret(secret, "customer-contact Secret"),
    )


@channels_add.command("miniprogram")
def channels_add_miniprogram(
    name: Annotated[str, typer.Option(help="Slug, e.g. tos-mp")],
    app_id: Annotated[str, typer.Option(help="AppID")],
    secret: SecretOpt = None,
) -> None:
    """Configure a Mini Program."""
    _add_channel(kind=ChannelKind.miniprogram, name=name, app_id=app_id, secret=_secret(secret, "AppSecret"))


@channels_app.command("list")
def channels_list() -> None:
    """The configured channel accounts (never their secrets)."""
    from rich.table import Column, Table

    from siyu.channels import service as channels_service
    from siyu.channels.api import callback_path

    # A path is copied into WeChat's settings: wrapped whole, never cut with an ellipsis.
    table = Table(
        "id",
        "kind",
        Column("name", overflow="fold"),
        Column("app id", overflow="fold"),
        "type",
        Column("callback path", overflow="fold"),
    )
    with unit_of_work() as session:
        for a in channels_service.list_accounts(session):
            table.add_row(str(a.id), a.kind, a.name, a.app_id, a.oa_type or "", callback_path(a) or "")
    Console().print(table)


@lifecycle_app.command("fit")
def lifecycle_fit(
    calibration_end: Annotated[
        str | None,
        typer.Option(help="Fit on purchases up to this date (YYYY-MM-DD) and compare with what came after"),
    ] = None,
    time_unit: Annotated[str, typer.Option(help="day or week")] = "week",
    penalizer: Annotated[float, typer.Option(help="L2 penalty on the parameters (0 for none)")] = 0.001,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Fit BG/NBD and Gamma-Gamma on the brand's purchases; without a calibration end, score customers with it."""
    from rich.table import Table

    from siyu.lifecycle import predictive
    from siyu.lifecycle import service as lifecycle_service
    from siyu.lifecycle.schemas import FitOut

    end = None
    if calibration_end is not None:
        try:
            day = dt.date.fromisoformat(calibration_end)
        except ValueError:
            _fail(f"--calibration-end {calibration_end!r} is not a date (YYYY-MM-DD)")
        end = lifecycle_service.end_of_day(day)
    try:
        with unit_of_work() as session:
            result = lifecycle_service.fit(
                session, calibration_end=end, time_unit=time_unit, penalizer=penalizer
            )
    except predictive.FitError as exc:
        _fail(str(exc))
    bg, gg, holdout = result.bgnbd, result.gamma_gamma, result.holdout
    if as_json:
        print(FitOut.of(result).model_dump_json())
        return
    console.print(
        f"BG/NBD on {result.customers} buyers, purchases up to {result.observed_until:%Y-%m-%d %H:%M} UTC, "
        f"time in {result.time_unit}s"
    )
    table = Table("model", "parameters", "log-likelihood")
    table.add_row(
        "BG/NBD", f"r={bg.r:.4g} alpha={bg.alpha:.4g} a={bg.a:.4g} b={bg.b:.4g}", f"{bg.log_likelihood:.2f}"
    )
    if gg is not None:
        table.add_row("Gamma-Gamma", f"p={gg.p:.4f} q={gg.q:.4g} v={gg.v:.4g}", f"{gg.log_likelihood:.2f}")
    Console().print(table)
    spend = predictive.mean_spend(gg) if gg is not None else None
    console.print(
        f"a purchase is a customer's last with probability {predictive.mean_dropout(bg):.1%} on average"
        + (f"; mean spend per purchase {spend / 100:,.2f} CNY" if spend is not None else "")
    )
    for note in predictive.interpret(bg, gg):
        console.print(f"[yellow]note:[/yellow] {note}")
    if result.gamma_gamma_error:
        console.print(f"Gamma-Gamma not fitted: {result.gamma_gamma_error}")
    if holdout is not None:
        t = Table(
            "repeat purchases in calibration", "customers", "predicted per customer", "actual per customer"
        )
        for g, n, p, a in holdout.by_frequency:
            t.add_row(f"{g}+" if g == 7 else str(g), str(n), f"{p:.3f}", f"{a:.3f}")
        Console().print(t)
        console.print(
            f"holdout of {holdout.period:.1f} {result.time_unit}s: predicted {holdout.predicted:.1f} "
            f"repeat purchase days, actual {holdout.actual}"
        )
    else:
        console.print(f"saved as value model #{result.model_id}; customers are scored with it from now on")


@lifecycle_app.command("run")
def lifecycle_run() -> None:
    """Re-stage every customer now (the worker does this every SIYU_LIFECYCLE_SCHEDULE_SECONDS)."""
    from siyu.lifecycle import service as lifecycle_service

    with unit_of_work() as session:
        run = lifecycle_service.restage(session)
    console.print(f"staged {run.profiles} customer(s), {run.changed} changed")
    for stage, n in run.by_stage.items():
        console.print(f"  {stage}: {n}")


@app.command("import")
def import_file(
    kind: Annotated[str, typer.Argument(help="orders, members or products")],
    file: Annotated[Path, typer.Argument(help="A .csv (UTF-8 or GBK) or .xlsx file")],
    source: Annotated[
        str, typer.Option(help="tmall, jd, pos or generic: the built-in column mapping")
    ] = "generic",
    mapping: Annotated[Path | None, typer.Option(help="JSON file overriding the mapping's columns")] = None,
    error_report: Annotated[
        Path | None, typer.Option(help="Where bad rows go (default FILE.errors.csv)")
    ] = None,
) -> None:
    """Import orders, members or products; re-running a file, or resuming a killed import, stores nothing twice."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from siyu.channels.imports import mappings, readers
    from siyu.channels.imports.service import run_import

    try:
        chosen = mappings.load(kind, source, mapping)
        total = readers.count_rows(file)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"{kind} from {file.name}", total=total)
            result = run_import(
                file,
                kind=kind,
                source=source,
                mapping=chosen,
                actor="cli",
                error_report=error_report,
                progress=lambda n: progress.advance(task, n),
            )
    except SiyuError as exc:
        _fail(exc.message)
    skipped = f", {result.rows_skipped} skipped (cancelled or unpaid)" if kind == "orders" else ""
    console.print(
        f"import #{result.import_id}: {result.rows_read} rows read, {result.rows_imported} imported, "
        f"{result.rows_duplicate} already there{skipped}, {result.rows_failed} refused"
    )
    if result.error_report is not None:
        for failure in result.failures[:5]:
            # Cells are the file's text: escaped, so "[b]" in a name is printed, not read as markup.
            console.print(f"  row {failure.row}, column {escape(failure.column)}: {escape(failure.reason)}")
        console.print(f"[yellow]refused rows are listed in {escape(str(result.error_report))}[/yellow]")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="How many customers to generate")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same brand")] = 7,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Generate, then exit")] = False,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Migrate, generate the Taste of Su demo brand, then serve the console."""
    from siyu.demo import run as run_demo

    if not no_serve:
        _check_port(host, port)  # before minutes of generating, not after
        # Tracked links in the demo's messages lead back to this server, whatever port it was given.
        os.environ.setdefault("SIYU_PUBLIC_URL", f"http://{host}:{port}")
        get_settings.cache_clear()
    settings = get_settings()
    migrate.upgrade(settings.database_url)
    result = run_demo(customers=customers, seed=seed, console=console)
    console.print(f"[bold]admin login:[/bold] {result.admin_username} / {result.admin_password}")
    console.print(f"[bold]API key (admin):[/bold] {result.api_key}")
    console.print(f"[bold]write key (source):[/bold] {result.write_key}")
    if result.wechat is not None:
        console.print(
            f"[bold]WeChat (local fake API at /_fake/wechat):[/bold] OA callback /wechat/oa/tos-oa/callback "
            f"token {result.wechat.oa_token} EncodingAESKey {result.wechat.oa_aes_key}; "
            f"WeCom callback /wechat/wecom/tos-wecom/callback token {result.wechat.wecom_token} "
            f"EncodingAESKey {result.wechat.wecom_aes_key}"
        )
    if not no_serve:
        # The demo's WeChat accounts are answered by the local fake, and the outbox runs in the server
        # so that enrichment and welcome messages happen without a separate worker.
        base = f"http://{host}:{port}/_fake/wechat"
        os.environ.setdefault("SIYU_FAKE_WECHAT", "true")
        os.environ.setdefault("SIYU_WECHAT_API_BASE", base)
        os.environ.setdefault("SIYU_WECOM_API_BASE", base)
        os.environ.setdefault("SIYU_OUTBOX_IN_SERVE", "true")
        get_settings.cache_clear()
        console.print(f"serving on http://{host}:{port}")
        serve(host=host, port=port, workers=1)


if __name__ == "__main__":
    app()
