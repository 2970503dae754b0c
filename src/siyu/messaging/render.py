"""Personalisation: templates rendered in a sandboxed Jinja environment against a customer's context.

The sandbox refuses attribute tricks (`__class__`, `mro`) and a template cannot mutate what it is given;
an unknown variable renders empty, so a customer without a tier gets "" rather than no message. Only
the context a template names is loaded, in one query per kind for a whole batch of customers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.auth.models import User
from siyu.clienteling.models import Store
from siyu.config import get_settings, secret_key
from siyu.errors import LocatedError
from siyu.ingest.models import Event
from siyu.loyalty.models import Member, MemberStatus
from siyu.messaging.models import Asset
from siyu.profiles.models import Profile

# What a template may name; docs/journeys.md lists them with examples.
CONTEXT_KEYS = (
    "name",
    "first_name",
    "traits",
    "tier",
    "points",
    "member_number",
    "favourite_product",
    "sa_name",
    "store",
    "event",
    "profile_id",
)
FUNCTIONS = ("asset", "track")
_ENV = ImmutableSandboxedEnvironment(
    autoescape=False, undefined=jinja2.Undefined, keep_trailing_newline=False
)


class TemplateError(LocatedError):
    """A template that does not compile or names what it cannot use; `path` is the body field."""


def strings(body: dict[str, Any], prefix: str = "body") -> Iterable[tuple[str, str]]:
    """Every (path, text) of a template body that is rendered."""
    for key, value in body.items():
        if key == "attachments":
            continue
        path = f"{prefix}.{key}"
        if isinstance(value, str):
            yield path, value
        elif isinstance(value, dict):
            yield from strings(value, path)


@lru_cache(maxsize=4096)
def compile_text(source: str) -> jinja2.Template:
    """The compiled template of one text (cached: the same text compiles once per process)."""
    return _ENV.from_string(source)


def names(body: dict[str, Any]) -> set[str]:
    """The context names a body's texts use; TemplateError for a syntax error or an unknown name."""
    return set(_names(tuple(strings(body))))


@lru_cache(maxsize=1024)
def _names(texts: tuple[tuple[str, str], ...]) -> frozenset[str]:
    used: set[str] = set()
    for path, text in texts:
        try:
            found = meta.find_undeclared_variables(_ENV.parse(text))
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(path, f"line {exc.lineno}: {exc.message}") from None
        unknown = sorted(found - set(CONTEXT_KEYS) - set(FUNCTIONS))
        if unknown:
            raise TemplateError(path, f"unknown name {unknown[0]!r} (one of {', '.join(CONTEXT_KEYS)})")
        used |= found
    return frozenset(used)


def _static(text: str) -> bool:
    return "{{" not in text and "{%" not in text and "{#" not in text


@lru_cache(maxsize=4096)
def _substitution(source: str) -> tuple[tuple[bool, str], ...] | None:
    """The text as (is a name, literal or name) parts when it is only text and plain `{{ name }}`s, else None."""
    try:
        template = _ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        return None  # compile_text raises it with its line
    parts: list[tuple[bool, str]] = []
    for output in template.body:
        if not isinstance(output, nodes.Output):
            return None
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                parts.append((False, node.data))
            elif isinstance(node, nodes.Name) and node.ctx == "load":
                parts.append((True, node.name))
            else:
                return None
    return tuple(parts)


def _render_text(source: str, context: dict[str, Any]) -> str:
    parts = _substitution(source)
    if parts is None:
        return compile_text(source).render(context).strip()
    return _substitute(parts, context)


def _substitute(parts: tuple[tuple[bool, str], ...], values: dict[str, Any]) -> str:
    # What Jinja prints for `{{ name }}` (str of the value, "" when missing), without building its
    # context for every customer: most of a broadcast's rendering time.
    return "".join([str(values.get(v, "")) if is_name else v for is_name, v in parts]).strip()


def render(body: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The body with every text rendered against context (attachments are kept as they are)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "attachments":
            out[key] = value
        elif isinstance(value, str):
            # Plain text is the common field (a title, a remark): no template to run.
            out[key] = value.strip() if _static(value) else _render_text(value, context)
        elif isinstance(value, dict):
            out[key] = render(value, context)
        else:
            out[key] = value
    return out


# Context names a body may use and still render alike for every customer with the same values: a broadcast's
# `{{ first_name }}` renders once per first name, not once per customer. `track` (a link signed per message),
# `event`, `traits` and `profile_id` differ per customer; `asset` depends only on its key.
_SHARED = frozenset(
    {"name", "first_name", "tier", "points", "member_number", "favourite_product", "sa_name", "store"}
)


# Names a template's context has per message, not per customer: not in the values `Renderer` is given.
_PER_MESSAGE = frozenset({"event", "asset", "track"})


def _direct(body: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """body rendered straight from a customer's values, when each text is plain or plain `{{ name }}`s of
    those values (what `render` would print, without building a context); None when a text needs Jinja."""
    plan: list[tuple[str, int, Any]] = []  # (key, 0 kept / 1 nested / 2 substituted, what)
    for key, value in body.items():
        if isinstance(value, dict) and key != "attachments":
            nested = _direct(value)
            if nested is None:
                return None
            plan.append((key, 1, nested))
        elif not isinstance(value, str) or key == "attachments":
            plan.append((key, 0, value))
        elif _static(value):
            plan.append((key, 0, value.strip()))
        else:
            parts = _substitution(value)
            if parts is None or any(is_name and part in _PER_MESSAGE for is_name, part in parts):
                return None
            plan.append((key, 2, parts))

    def fill(values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, kind, what in plan:
            if kind == 0:
                out[key] = what
            elif kind == 1:
                out[key] = what(values)
            else:
                out[key] = _substitute(what, values)
        return out

    return fill


class Renderer:
    """Renders one body for many customers: straight from each customer's values when its texts are plain
    substitutions, else once per distinct combination of the values it names when it names only values
    many customers share, else through Jinja for each."""

    def __init__(self, body: dict[str, Any], used: set[str]) -> None:
        self.body = body
        self.direct = _direct(body)
        shared = used - {"asset"}
        self.keys = tuple(sorted(shared)) if shared <= _SHARED else None
        self.done: dict[tuple[Any, ...], tuple[dict[str, Any], str | None]] = {}

    def render(
        self, values: dict[str, Any], context: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], str | None]:
        """(content, None), or ({}, the error) when the template fails for these values; `values` are the
        customer's context names, `context()` builds the whole context when the body has to run."""
        if self.direct is not None:
            return self.direct(values), None
        key = tuple(values.get(k) for k in self.keys) if self.keys is not None else None
        if key is not None:
            found = self.done.get(key)
            if found is not None:
                return found
        try:
            result: tuple[dict[str, Any], str | None] = (render(self.body, context()), None)
        except Exception as exc:  # a sandbox refusal or a type error in one customer's data
            result = ({}, f"{type(exc).__name__}: {exc}"[:500])
        if key is not None:
            self.done[key] = result
        return result


def track_token(message_key: str, url: str) -> str:
    """The signature that makes a tracked link unforgeable (so clicks cannot be invented)."""
    digest = hmac.new(
        secret_key(get_settings()).encode(), f"{message_key}\n{url}".encode(), hashlib.sha256
    ).hexdigest()
    return digest[:32]


def tracker(message_key: str) -> Callable[[str], str]:
    """`track(url)` for one message: a siyu link that records the click and redirects to url."""
    base = get_settings().public_url.rstrip("/")

    def track(url: str) -> str:
        token = track_token(message_key, url)
        return f"{base}/m/click?k={quote(message_key, safe='')}&u={quote(url, safe='')}&t={token}"

    return track


def contexts(session: Session, profile_ids: Sequence[int], used: set[str]) -> dict[int, dict[str, Any]]:
    """The personalisation context of each profile, loading only what `used` names."""
    ctx: dict[int, dict[str, Any]] = {pid: {"profile_id": pid} for pid in profile_ids}
    if not profile_ids:
        return ctx
    profile_keys = {"name", "first_name", "traits", "sa_name", "store"}
    if used & profile_keys:
        owners: dict[int, int] = {}
        stores: dict[int, int] = {}
        for chunk in bulk.chunks(profile_ids):
            rows = session.execute(
                select(
                    Profile.id, Profile.name, Profile.traits, Profile.owner_user_id, Profile.store_id
                ).where(bulk.matches(session, Profile.id, chunk))
            )
            for pid, name, traits, owner, store in rows:
                traits = traits or {}
                full = name or traits.get("name") or ""
                first = traits.get("first_name") or (str(full).split(" ")[0] if full else "")
                ctx[pid].update(name=full, first_name=first, traits=dict(traits))
                if owner is not None:
                    owners[pid] = owner
                if store is not None:
                    stores[pid] = store
        if "sa_name" in used and owners:
            users: dict[int, str] = dict(
                session.execute(
                    select(User.id, func.coalesce(func.nullif(User.display_name, ""), User.username)).where(
                        User.id.in_(set(owners.values()))
                    )
                ).all()
            )
            for pid, uid in owners.items():
                ctx[pid]["sa_name"] = users.get(uid, "")
        if "store" in used and stores:
            names_ = dict(
                session.execute(select(Store.id, Store.name).where(Store.id.in_(set(stores.values())))).all()
            )
            for pid, sid in stores.items():
                ctx[pid]["store"] = names_.get(sid, "")
    if used & {"tier", "points", "member_number"}:
        for chunk in bulk.chunks(profile_ids):
            for pid, tier, balance, number in session.execute(
                select(Member.profile_id, Member.tier, Member.balance, Member.member_number).where(
                    bulk.matches(session, Member.profile_id, chunk), Member.status != MemberStatus.closed
                )
            ):
                ctx[pid].update(tier=tier, points=balance, member_number=number)
    if "favourite_product" in used:
        # The product most recently added to the wishlist: what the customer said she wants.
        for chunk in bulk.chunks(profile_ids):
            latest = (
                select(Event.profile_id, func.max(Event.id).label("id"))
                .where(
                    bulk.matches(session, Event.profile_id, chunk), Event.event == "Product Added to Wishlist"
                )
                .group_by(Event.profile_id)
                .subquery()
            )
            for pid, props in session.execute(
                select(Event.profile_id, Event.properties).join(latest, Event.id == latest.c.id)
            ):
                ctx[pid]["favourite_product"] = str((props or {}).get("name") or "")
    return ctx


def asset_lookup(session: Session) -> Callable[[str], dict[str, Any]]:
    """`asset(key)` for templates: the library item as a dict ({} for a missing key), read once per key."""
    cache: dict[str, dict[str, Any]] = {}

    def asset(key: str) -> dict[str, Any]:
        if key not in cache:
            row = session.execute(select(Asset).where(Asset.key == key)).scalar_one_or_none()
            cache[key] = (
                {}
                if row is None
                else {
                    "key": row.key,
                    "kind": str(row.kind),
                    "title": row.title,
                    "url": row.url,
                    "description": row.description,
                    "media_id": row.media_id,
                    "appid": row.appid,
                    "page": row.page,
                }
            )
        return cache[key]

    return asset
