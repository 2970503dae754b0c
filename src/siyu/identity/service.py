"""Identity resolution: deterministic stitching of identifiers into profiles, with reversible merges.

The graph: identifiers are nodes, links are edges recorded with the event and rule that made them, a
profile is a connected component. Two guards keep it from over-merging:

* an identifier type a profile may hold once (member id and phone by default) never silently joins
  two profiles that hold different values of it: the pair goes to the review queue;
* an anonymous id seen with more member ids than the shared-device threshold stops linking.

An unmerge splits off what was linked to the profile only through one identifier, re-points its
events, and blocks the removed links so the same evidence cannot merge them again by itself.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.orm import Session, aliased

from siyu import bulk
from siyu.auth.principal import Principal
from siyu.auth.service import audit
from siyu.config import Settings
from siyu.db import utcnow
from siyu.errors import Conflict, Forbidden, NotFound
from siyu.identity.models import (
    BlockedLink,
    Identifier,
    IdentifierType,
    IdentityLink,
    IdentityMerge,
    MergeKind,
    MergeReview,
    ReviewStatus,
)
from siyu.ingest.models import Event
from siyu.ingest.normalize import NormalizedEvent
from siyu.profiles import service as profiles_service
from siyu.profiles.models import Profile

Key = tuple[str, str]
MEMBER = IdentifierType.member_id.value
ANONYMOUS = IdentifierType.anonymous_id.value

PROFILE_COLUMNS: bulk.Columns = [
    ("id", "int"),
    ("created_at", "ts"),
    ("updated_at", "ts"),
    ("traits", "json"),
    ("events_count", "int"),
    ("orders_count", "int"),
    ("revenue_fen", "int"),
    ("refunded_fen", "int"),
]
IDENTIFIER_COLUMNS: bulk.Columns = [
    ("id", "int"),
    ("type", "text"),
    ("value", "text"),
    ("profile_id", "int"),
    ("source_key_id", "int"),
    ("first_seen_at", "ts"),
    ("last_seen_at", "ts"),
    ("shared", "bool"),
    ("seen_member_ids", "json"),
]
MERGE_COLUMNS: bulk.Columns = [
    ("kind", "text"),
    ("profile_id", "int"),
    ("other_profile_id", "int"),
    ("rule", "text"),
    ("message_id", "text"),
    ("identifier_id", "int"),
    ("actor", "text"),
    ("created_at", "ts"),
    ("detail", "json"),
]

_ident = cast(Table, Identifier.__table__)
_links = cast(Table, IdentityLink.__table__)


@dataclass(slots=True)
class _Component:
    """What the union-find keeps at a root: the profiles and unique-typed values it holds."""

    profiles: set[int] = field(default_factory=set)
    uniques: dict[str, set[str]] = field(default_factory=dict)


@dataclass(slots=True)
class _Existing:
    id: int
    profile_id: int
    last_seen_at: dt.datetime
    shared: bool
    seen_member_ids: list[str] | None
    dirty: bool = False
    new_last_seen: dt.datetime | None = None


@dataclass(slots=True)
class Resolution:
    """Where each event of the batch goes, and which profiles need their counters rebuilt."""

    profile_ids: list[int]
    identifier_ids: list[int]
    merged_profiles: set[int]
    new_profiles: set[int]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}
        self.info: dict[Any, _Component] = {}

    def add(self, node: Any, info: _Component) -> None:
        if node not in self.parent:
            self.parent[node] = node
            self.info[node] = info

    def find(self, node: Any) -> Any:
        parent = self.parent
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    def union(self, a: Any, b: Any) -> Any:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        ia, ib = self.info[ra], self.info[rb]
        if len(ia.profiles) + sum(map(len, ia.uniques.values())) < len(ib.profiles) + sum(
            map(len, ib.uniques.values())
        ):
            ra, rb, ia, ib = rb, ra, ib, ia
        self.parent[rb] = ra
        ia.profiles |= ib.profiles
        for t, values in ib.uniques.items():
            ia.uniques.setdefault(t, set()).update(values)
        del self.info[rb]
        return ra


class Resolver:
    """Resolves one batch of events to profiles inside the caller's transaction."""

    def __init__(self, session: Session, settings: Settings, *, now: dt.datetime):
        self.session = session
        self.unique_types = tuple(settings.unique_identifier_types)
        self.threshold = settings.shared_device_threshold
        self.now = now
        self._blocked_cache: dict[tuple[frozenset[int], frozenset[int]], bool] = {}
        self._any_blocked: bool | None = None

    def resolve(self, events: Sequence[NormalizedEvent]) -> Resolution:
        """Attach every event to a profile, creating, linking and merging as the evidence says."""
        keys: dict[Key, None] = {}
        for ev in events:
            for k in ev.identifiers:
                keys[k] = None
            if ev.previous_key is not None:
                keys[ev.previous_key] = None
                keys[(MEMBER, ev.previous_key[1])] = None
        existing = self._load_existing(keys)

        # An alias's previousId names whichever identifier already exists: an anonymous id or a member id.
        for ev in events:
            if ev.previous_key is not None and ev.previous_key not in existing:
                member_key = (MEMBER, ev.previous_key[1])
                if member_key in existing:
                    ev.previous_key = member_key
        mentioned: set[Key] = set()
        for ev in events:
            mentioned.update(ev.identifiers)
            if ev.previous_key is not None:
                mentioned.add(ev.previous_key)
        keys = {k: None for k in keys if k in mentioned}

        uf = _UnionFind()
        profile_uniques = self._profile_uniques({e.profile_id for e in existing.values()})
        for pid, uniques in profile_uniques.items():
            uf.add(("p", pid), _Component({pid}, uniques))
        for k in keys:
            uniques = {k[0]: {k[1]}} if k[0] in self.unique_types else {}
            if k in existing:
                uf.add(k, _Component(set(), uniques))
                uf.union(("p", existing[k].profile_id), k)
            else:
                uf.add(k, _Component(set(), uniques))

        link_candidates: dict[tuple[Key, Key], tuple[str, str]] = {}
        reviews: list[tuple[Key, Key, str, str]] = []
        merge_causes: dict[Any, list[tuple[str, Key]]] = defaultdict(list)
        primaries: list[Key] = []
        first_seen: dict[Key, dt.datetime] = {}
        last_seen: dict[Key, dt.datetime] = {}
        seen_state: dict[Key, list[str]] = {}
        shared_now: set[Key] = set()
        source_of: dict[Key, int | None] = {}

        for ev in events:
            ev_keys = list(ev.identifiers)
            if ev.previous_key is not None and ev.previous_key not in ev_keys:
                ev_keys.append(ev.previous_key)
            for k in ev_keys:
                if k not in source_of:
                    source_of[k] = ev.source_key_id
                ts = ev.timestamp
                if k not in first_seen or ts < first_seen[k]:
                    first_seen[k] = ts
                if k not in last_seen or ts > last_seen[k]:
                    last_seen[k] = ts
            members = [v for t, v in ev_keys if t == MEMBER]
            linkable: list[Key] = []
            for k in ev_keys:
                if k[0] == ANONYMOUS:
                    row = existing.get(k)
                    if (row is not None and row.shared) or k in shared_now:
                        continue
                    seen = seen_state.get(k)
                    if seen is None:
                        seen = list(row.seen_member_ids or []) if row is not None else []
                        seen_state[k] = seen
                    for m in members:
                        if m not in seen:
                            seen.append(m)
                    if len(seen) > self.threshold:
                        shared_now.add(k)
                        continue
                linkable.append(k)
            primary = linkable[0] if linkable else ev_keys[0]
            primaries.append(primary)
            for k in linkable[1:]:
                rule = "alias" if k == ev.previous_key else "same_event"
                self._link(uf, primary, k, ev.message_id, rule, link_candidates, reviews, merge_causes)

        # Components become profiles: new ones are created, ones joining several profiles are merged.
        root_profile: dict[Any, int] = {}
        new_roots: list[Any] = []
        new_root_set: set[Any] = set()
        merges: list[tuple[int, list[int], Any]] = []
        for k in keys:
            root = uf.find(k)
            if root in root_profile or root in new_root_set:
                continue
            pids = uf.info[root].profiles
            if not pids:
                new_roots.append(root)
                new_root_set.add(root)
            else:
                winner = min(pids)
                root_profile[root] = winner
                if len(pids) > 1:
                    merges.append((winner, sorted(pids - {winner}), root))
        new_ids = self._create_profiles(len(new_roots))
        root_profile.update(zip(new_roots, new_ids, strict=True))

        planned: list[PlannedMerge] = []
        for winner, losers, root in merges:
            causes = merge_causes.get(root) or [("", ("", ""))]
            message_id, bridge = causes[0]
            planned.append(
                PlannedMerge(
                    winner,
                    losers,
                    rule="same_event",
                    message_id=message_id or None,
                    identifier_id=existing[bridge].id if bridge in existing else None,
                    detail={"events": [m for m, _ in causes][:20]},
                )
            )
        merge_many(self.session, planned, now=self.now)
        merged = {m.winner for m in planned}

        key_ids = self._write_identifiers(
            keys, existing, uf, root_profile, first_seen, last_seen, seen_state, shared_now, source_of
        )
        self._write_links(link_candidates, key_ids, existing)
        self._write_reviews(reviews, key_ids, uf, root_profile)

        return Resolution(
            profile_ids=[root_profile[uf.find(p)] for p in primaries],
            identifier_ids=[key_ids[p] for p in primaries],
            merged_profiles=merged,
            new_profiles=set(new_ids),
        )

    def _link(
        self,
        uf: _UnionFind,
        a: Key,
        b: Key,
        message_id: str,
        rule: str,
        link_candidates: dict[tuple[Key, Key], tuple[str, str]],
        reviews: list[tuple[Key, Key, str, str]],
        merge_causes: dict[Any, list[tuple[str, Key]]],
    ) -> None:
        ra, rb = uf.find(a), uf.find(b)
        if ra != rb:
            ia, ib = uf.info[ra], uf.info[rb]
            for t in self.unique_types:
                if ia.uniques.get(t) and ib.uniques.get(t):
                    reviews.append((a, b, message_id, f"both profiles hold a different {t}"))
                    return
            if ia.profiles and ib.profiles and self._blocked(ia.profiles, ib.profiles):
                return
            causes = merge_causes.pop(ra, None) or []
            causes.extend(merge_causes.pop(rb, []))
            both_known = bool(ia.profiles and ib.profiles)
            root = uf.union(a, b)
            if both_known:
                causes.append((message_id, b))
            if causes:
                merge_causes[root] = causes
        pair = (a, b) if a <= b else (b, a)
        link_candidates.setdefault(pair, (message_id, rule))

    def _blocked(self, a: set[int], b: set[int]) -> bool:
        if self._any_blocked is None:
            # Most databases have few or no blocked pairs: one probe per batch spares a join per merge.
            self._any_blocked = self.session.execute(select(BlockedLink.a_id).limit(1)).first() is not None
        if not self._any_blocked:
            return False
        cache_key = (frozenset(a), frozenset(b))
        if cache_key not in self._blocked_cache:
            ia, ib = aliased(Identifier), aliased(Identifier)
            statement = (
                select(BlockedLink.a_id)
                .join(ia, ia.id == BlockedLink.a_id)
                .join(ib, ib.id == BlockedLink.b_id)
                .where(
                    or_(
                        and_(ia.profile_id.in_(a), ib.profile_id.in_(b)),
                        and_(ia.profile_id.in_(b), ib.profile_id.in_(a)),
                    )
                )
                .limit(1)
            )
            self._blocked_cache[cache_key] = self.session.execute(statement).first() is not None
        return self._blocked_cache[cache_key]

    def _load_existing(self, keys: Iterable[Key]) -> dict[Key, _Existing]:
        wanted = set(keys)
        values = sorted({v for _, v in wanted})
        found: dict[Key, _Existing] = {}
        for chunk in bulk.chunks(values):
            rows = self.session.execute(
                select(
                    _ident.c.id,
                    _ident.c.type,
                    _ident.c.value,
                    _ident.c.profile_id,
                    _ident.c.last_seen_at,
                    _ident.c.shared,
                    _ident.c.seen_member_ids,
                ).where(bulk.matches(self.session, _ident.c.value, chunk))
            )
            for row in rows:
                key = (row.type, row.value)
                if key in wanted:
                    found[key] = _Existing(
                        row.id, row.profile_id, row.last_seen_at, row.shared, row.seen_member_ids
                    )
        return found

    def _profile_uniques(self, profile_ids: set[int]) -> dict[int, dict[str, set[str]]]:
        result: dict[int, dict[str, set[str]]] = {pid: {} for pid in profile_ids}
        if not profile_ids or not self.unique_types:
            return result
        for chunk in bulk.chunks(sorted(profile_ids)):
            rows = self.session.execute(
                select(_ident.c.profile_id, _ident.c.type, _ident.c.value).where(
                    bulk.matches(self.session, _ident.c.profile_id, chunk),
                    _ident.c.type.in_(self.unique_types),
                )
            )
            for pid, t, v in rows:
                result[pid].setdefault(t, set()).add(v)
        return result

    def _create_profiles(self, n: int) -> list[int]:
        ids = bulk.allocate_ids(self.session, "profiles", n)
        now = self.now
        bulk.insert_rows(
            self.session, "profiles", PROFILE_COLUMNS, [(pid, now, now, {}, 0, 0, 0, 0) for pid in ids]
        )
        return ids

    def _write_identifiers(
        self,
        keys: dict[Key, None],
        existing: dict[Key, _Existing],
        uf: _UnionFind,
        root_profile: dict[Any, int],
        first_seen: dict[Key, dt.datetime],
        last_seen: dict[Key, dt.datetime],
        seen_state: dict[Key, list[str]],
        shared_now: set[Key],
        source_of: dict[Key, int | None],
    ) -> dict[Key, int]:
        key_ids: dict[Key, int] = {}
        new_keys = [k for k in keys if k not in existing]
        new_ids = bulk.allocate_ids(self.session, "identifiers", len(new_keys))
        new_rows: list[tuple[Any, ...]] = []
        for k, iid in zip(new_keys, new_ids, strict=True):
            key_ids[k] = iid
            new_rows.append(
                (
                    iid,
                    k[0],
                    k[1],
                    root_profile[uf.find(k)],
                    source_of.get(k),
                    first_seen.get(k, self.now),
                    last_seen.get(k, self.now),
                    k in shared_now,
                    seen_state.get(k) or None,
                )
            )
        updates: list[tuple[Any, ...]] = []
        for k, row in existing.items():
            if k not in keys:
                continue
            key_ids[k] = row.id
            seen = seen_state.get(k)
            latest = last_seen.get(k)
            changed_seen = seen is not None and seen != (row.seen_member_ids or [])
            if (latest is not None and latest > row.last_seen_at) or changed_seen or k in shared_now:
                updates.append(
                    (
                        row.id,
                        max(latest or row.last_seen_at, row.last_seen_at),
                        row.shared or k in shared_now,
                        seen if seen is not None else row.seen_member_ids,
                    )
                )
        bulk.insert_rows(self.session, "identifiers", IDENTIFIER_COLUMNS, new_rows)
        bulk.update_rows(
            self.session,
            "identifiers",
            [("last_seen_at", "ts"), ("shared", "bool"), ("seen_member_ids", "json")],
            updates,
        )
        return key_ids

    def _write_links(
        self,
        candidates: dict[tuple[Key, Key], tuple[str, str]],
        key_ids: dict[Key, int],
        existing: dict[Key, _Existing],
    ) -> None:
        if not candidates:
            return
        pairs: dict[tuple[int, int], tuple[str, str]] = {}
        check: set[int] = set()
        for (a, b), why in candidates.items():
            ia, ib = key_ids[a], key_ids[b]
            pair = (ia, ib) if ia < ib else (ib, ia)
            pairs.setdefault(pair, why)
            if a in existing and b in existing:
                check.add(pair[0])
        if check:
            for chunk in bulk.chunks(sorted(check)):
                for a_id, b_id in self.session.execute(
                    select(_links.c.a_id, _links.c.b_id).where(
                        bulk.matches(self.session, _links.c.a_id, chunk)
                    )
                ):
                    pairs.pop((a_id, b_id), None)
        bulk.insert_rows(
            self.session,
            "identity_links",
            [
                ("a_id", "int"),
                ("b_id", "int"),
                ("message_id", "text"),
                ("rule", "text"),
                ("created_at", "ts"),
                ("active", "bool"),
            ],
            [(a, b, m, rule, self.now, True) for (a, b), (m, rule) in pairs.items()],
        )

    def _write_reviews(
        self,
        reviews: list[tuple[Key, Key, str, str]],
        key_ids: dict[Key, int],
        uf: _UnionFind,
        root_profile: dict[Any, int],
    ) -> None:
        seen: set[tuple[int, int]] = set()
        for a, b, message_id, reason in reviews:
            pa, pb = root_profile[uf.find(a)], root_profile[uf.find(b)]
            if pa == pb:
                continue
            pair = (min(pa, pb), max(pa, pb))
            if pair in seen:
                continue
            seen.add(pair)
            already = self.session.execute(
                select(MergeReview.id).where(
                    MergeReview.status == ReviewStatus.open,
                    or_(
                        and_(MergeReview.profile_a_id == pa, MergeReview.profile_b_id == pb),
                        and_(MergeReview.profile_a_id == pb, MergeReview.profile_b_id == pa),
                    ),
                )
            ).first()
            if already is None:
                self.session.add(
                    MergeReview(
                        profile_a_id=pa,
                        profile_b_id=pb,
                        identifier_a_id=key_ids[a],
                        identifier_b_id=key_ids[b],
                        message_id=message_id,
                        reason=reason,
                        created_at=self.now,
                    )
                )
        self.session.flush()


@dataclass(slots=True)
class PlannedMerge:
    """Losers to fold into winner, and why."""

    winner: int
    losers: Sequence[int]
    rule: str
    message_id: str | None = None
    identifier_id: int | None = None
    actor: str = "system"
    detail: dict[str, Any] = field(default_factory=dict)


MergeHook = Callable[[Session, list[tuple[int, int]], dt.datetime], None]
_merge_hooks: list[MergeHook] = []
_hooks_installed = False


def _install_merge_hooks() -> None:
    """The domains that keep per-profile state of their own and must follow a merge (loyalty)."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    from siyu.journeys.service import merge_enrolments
    from siyu.lifecycle.service import forget_merged  # lazily: these domains build on identity
    from siyu.loyalty.service import merge_memberships
    from siyu.profiles.service import merge_tags
    from siyu.segments.service import forget_merged as leave_segments

    _merge_hooks.extend([merge_memberships, merge_tags, forget_merged, leave_segments, merge_enrolments])


def refresh_derived(session: Session, profile_ids: Sequence[int]) -> None:
    """Re-derive automatic tags, stages and segment memberships of profiles a merge or split reshaped."""
    from siyu.lifecycle.service import restage
    from siyu.profiles.tagging import refresh as refresh_tags
    from siyu.segments.service import refresh_for

    ids = sorted(set(profile_ids))
    refresh_tags(session, ids)
    restage(session, scope=ids)
    refresh_for(session, ids)


def merge_many(session: Session, merges: Sequence[PlannedMerge], *, now: dt.datetime | None = None) -> None:
    """Fold each merge's losers into its winner (identifiers, events, redirects), recorded per loser.

    Counters are left to the caller (`profiles_service.recompute`); flushes, never commits.
    """
    target = {loser: m.winner for m in merges for loser in m.losers}
    if not target:
        return
    now = now or utcnow()
    pairs = list(target.items())
    bulk.repoint(session, "identifiers", "profile_id", pairs)
    bulk.repoint(session, "events", "profile_id", pairs)
    # Profiles merged into a loser earlier now redirect straight to the survivor.
    bulk.repoint(session, "profiles", "merged_into_id", pairs)
    bulk.update_rows(
        session,
        "profiles",
        [("merged_into_id", "int"), ("updated_at", "ts")],
        [(loser, winner, now) for loser, winner in pairs],
    )
    bulk.insert_rows(
        session,
        "identity_merges",
        MERGE_COLUMNS,
        [
            (
                MergeKind.merge.value,
                m.winner,
                loser,
                m.rule,
                m.message_id,
                m.identifier_id,
                m.actor,
                now,
                m.detail,
            )
            for m in merges
            for loser in m.losers
        ],
    )
    _install_merge_hooks()
    for hook in _merge_hooks:
        hook(session, pairs, now)


def merge_profiles(
    session: Session,
    winner: int,
    losers: Sequence[int],
    *,
    rule: str,
    message_id: str | None = None,
    identifier_id: int | None = None,
    actor: str = "system",
    detail: dict[str, Any] | None = None,
) -> None:
    """Fold losers into winner and rebuild both sides' counters from their events."""
    if not losers:
        return
    merge_many(
        session,
        [PlannedMerge(winner, losers, rule, message_id, identifier_id, actor, detail or {})],
    )
    profiles_service.recompute(session, [winner, *losers])
    refresh_derived(session, [winner])


@dataclass(slots=True)
class UnmergeResult:
    profile_id: int
    new_profile_id: int
    identifier_ids: list[int]
    events_moved: int


def unmerge(
    session: Session, principal: Principal, profile_id: int, id_type: str, value: str
) -> UnmergeResult:
    """Split off the identifier (type, value) with whatever was linked to the profile only through it."""
    if not principal.can_edit_identity():
        raise Forbidden("only admin and hq may unmerge profiles")
    profile = profiles_service.get_or_raise(session, principal, profile_id)
    target = session.execute(
        select(Identifier).where(Identifier.type == id_type, Identifier.value == value)
    ).scalar_one_or_none()
    if target is None or target.profile_id != profile.id:
        raise NotFound(f"profile {profile_id} holds no identifier {id_type}={value}")
    members = session.execute(
        select(Identifier.id, Identifier.first_seen_at)
        .where(Identifier.profile_id == profile.id)
        .order_by(Identifier.first_seen_at, Identifier.id)
    ).all()
    if len(members) < 2:
        raise Conflict(f"profile {profile.id} has only one identifier: nothing to split")
    ids = [m.id for m in members]
    adjacency: dict[int, set[int]] = defaultdict(set)
    link_rows: list[Any] = []
    for chunk in bulk.chunks(ids):
        link_rows += session.execute(
            select(IdentityLink.id, IdentityLink.a_id, IdentityLink.b_id).where(
                IdentityLink.active.is_(True), IdentityLink.a_id.in_(chunk)
            )
        ).all()
    id_set = set(ids)
    for _, a, b in link_rows:
        if a in id_set and b in id_set:
            adjacency[a].add(b)
            adjacency[b].add(a)
    # The part that stays: everything still connected, without the target, to the oldest other identifier.
    anchor = next(i for i in ids if i != target.id)
    stay = {anchor}
    stack = [anchor]
    while stack:
        node = stack.pop()
        for nxt in adjacency[node]:
            if nxt != target.id and nxt not in stay:
                stay.add(nxt)
                stack.append(nxt)
    split = [i for i in ids if i not in stay]
    cut = [(lid, a, b) for lid, a, b in link_rows if (a in stay) != (b in stay) and {a, b} <= id_set]
    now = utcnow()

    new_profile = Profile(created_at=now, updated_at=now, traits={})
    session.add(new_profile)
    session.flush()
    session.execute(update(Identifier).where(Identifier.id.in_(split)).values(profile_id=new_profile.id))
    moved = 0
    for chunk in bulk.chunks(split):
        result = session.execute(
            update(Event)
            .where(Event.profile_id == profile.id, Event.identifier_id.in_(chunk))
            .values(profile_id=new_profile.id)
        )
        moved += int(getattr(result, "rowcount", 0) or 0)
    if cut:
        session.execute(
            update(IdentityLink)
            .where(IdentityLink.id.in_([lid for lid, _, _ in cut]))
            .values(active=False, removed_at=now)
        )
    record = IdentityMerge(
        kind=MergeKind.unmerge,
        profile_id=profile.id,
        other_profile_id=new_profile.id,
        rule="manual",
        identifier_id=target.id,
        actor=principal.actor,
        created_at=now,
        detail={"identifiers": split, "events_moved": moved, "links_removed": [lid for lid, _, _ in cut]},
    )
    session.add(record)
    session.flush()
    existing_blocks: set[tuple[int, int]] = set()
    if cut:
        rows = session.execute(
            select(BlockedLink.a_id, BlockedLink.b_id).where(
                BlockedLink.a_id.in_([min(a, b) for _, a, b in cut])
            )
        )
        existing_blocks = {(a, b) for a, b in rows}
    for _, a, b in cut:
        pair = (min(a, b), max(a, b))
        if pair not in existing_blocks:
            existing_blocks.add(pair)
            session.add(
                BlockedLink(a_id=pair[0], b_id=pair[1], reason="unmerge", created_at=now, merge_id=record.id)
            )
    profiles_service.recompute(session, [profile.id, new_profile.id])
    refresh_derived(session, [profile.id, new_profile.id])
    _audit(
        session,
        principal,
        "identity.unmerge",
        profile.id,
        {"identifier": f"{id_type}", "new_profile_id": new_profile.id},
    )
    session.flush()
    return UnmergeResult(profile.id, new_profile.id, split, moved)


def list_reviews(
    session: Session, status: ReviewStatus | None = ReviewStatus.open, limit: int = 100
) -> Sequence[MergeReview]:
    """Merge reviews, newest first."""
    statement = (
        select(MergeReview).order_by(MergeReview.created_at.desc(), MergeReview.id.desc()).limit(limit)
    )
    if status is not None:
        statement = statement.where(MergeReview.status == status)
    return session.execute(statement).scalars().all()


def decide_review(session: Session, principal: Principal, review_id: int, *, approve: bool) -> MergeReview:
    """Approve (merge the two profiles) or reject (block the two identifiers from linking) a review."""
    if not principal.can_edit_identity():
        raise Forbidden("only admin and hq may decide merge reviews")
    review = session.get(MergeReview, review_id)
    if review is None:
        raise NotFound(f"merge review {review_id} not found")
    if review.status != ReviewStatus.open:
        raise Conflict(f"merge review {review_id} is already {review.status}")
    now = utcnow()
    a, b = review.identifier_a_id, review.identifier_b_id
    pair = (min(a, b), max(a, b))
    if approve:
        pa = profiles_service.live_id(session, review.profile_a_id)
        pb = profiles_service.live_id(session, review.profile_b_id)
        if pa != pb:
            merge_profiles(
                session,
                min(pa, pb),
                [max(pa, pb)],
                rule="review_approved",
                message_id=review.message_id,
                identifier_id=b,
                actor=principal.actor,
            )
        exists = session.execute(
            select(IdentityLink.id).where(IdentityLink.a_id == pair[0], IdentityLink.b_id == pair[1])
        ).first()
        if exists is None:
            session.add(
                IdentityLink(
                    a_id=pair[0],
                    b_id=pair[1],
                    message_id=review.message_id,
                    rule="review_approved",
                    created_at=now,
                )
            )
        else:
            session.execute(
                update(IdentityLink).where(IdentityLink.id == exists[0]).values(active=True, removed_at=None)
            )
        review.status = ReviewStatus.approved
    else:
        if session.get(BlockedLink, pair) is None:
            session.add(BlockedLink(a_id=pair[0], b_id=pair[1], reason="review_rejected", created_at=now))
        review.status = ReviewStatus.rejected
    review.decided_at = now
    review.decided_by = principal.actor
    _audit(session, principal, f"identity.review.{review.status}", review.id, {})
    session.flush()
    return review


def _audit(
    session: Session, principal: Principal, action: str, subject_id: int, detail: dict[str, Any]
) -> None:
    audit(
        session,
        principal,
        action,
        "profile" if action == "identity.unmerge" else "merge_review",
        subject_id,
        detail,
    )
