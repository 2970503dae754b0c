"""Blind boxes: a draw paid with points, prizes by weight, stock never oversold, odds verifiable.

A draw locks the box row, pays the cost (a spend posting), rolls a uniform integer below the total weight of
the prizes still in stock, takes the prize whose cumulative band holds the roll, decrements its stock and
awards it (a voucher, bonus points or nothing), all in one transaction. Each draw keeps its roll and the
weights in force, so `verify` can recompute every prize, and `stats` compares the observed shares with the
configured odds.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.db import is_postgres, utcnow
from siyu.errors import BadRequest, Conflict, NotFound
from siyu.loyalty import service, vouchers
from siyu.loyalty.models import BlindBox, BlindBoxDraw, BlindBoxPrize, VoucherTemplate

# The operating system's cryptographic generator: a draw cannot be predicted from earlier ones.
SYSTEM = random.SystemRandom()


def pick(weights: Sequence[Sequence[int]], roll: int) -> int:
    """The prize id whose cumulative weight band holds roll."""
    upto = 0
    for prize_id, weight in weights:
        upto += weight
        if roll < upto:
            return prize_id
    raise ValueError(f"roll {roll} is beyond the total weight {upto}")


def _lock(session: Session, box_id: int) -> BlindBox:
    statement = select(BlindBox).where(BlindBox.id == box_id)
    if is_postgres(session):
        statement = statement.with_for_update()
    box = session.execute(statement).scalar_one_or_none()
    if box is None:
        raise NotFound(f"no blind box {box_id}")
    return box


@dataclass(frozen=True, slots=True)
class DrawResult:
    draw: BlindBoxDraw
    prize: BlindBoxPrize
    replayed: bool


def draw(
    session: Session,
    box_id: int,
    member_id: int,
    *,
    key: str,
    roller: random.Random = SYSTEM,
    now: dt.datetime | None = None,
) -> DrawResult:
    """Pay and draw once; Overdraw without enough points, Conflict when the box is empty or closed."""
    now = now or utcnow()
    box = _lock(session, box_id)
    first = session.execute(
        select(BlindBoxDraw).where(BlindBoxDraw.idempotency_key == key)
    ).scalar_one_or_none()
    if first is not None:
        return DrawResult(first, session.get_one(BlindBoxPrize, first.prize_id), replayed=True)
    if not box.active:
        raise Conflict(f"blind box {box.name!r} is closed")
    prizes = list(
        session.execute(
            select(BlindBoxPrize)
            .where(BlindBoxPrize.box_id == box.id, BlindBoxPrize.weight > 0)
            .order_by(BlindBoxPrize.id)
            .execution_options(populate_existing=True)
        ).scalars()
    )
    in_stock = [p for p in prizes if p.stock is None or p.awarded < p.stock]
    if not in_stock:
        raise Conflict(f"blind box {box.name!r} is empty")
    paid = service.spend(
        session, member_id, box.points_cost, key=f"blindbox:{key}", reason=f"blind box: {box.name}", now=now
    )
    weights = [[p.id, p.weight] for p in in_stock]
    roll = roller.randrange(sum(w for _, w in weights))
    prize = next(p for p in in_stock if p.id == pick(weights, roll))
    prize.awarded += 1
    voucher_id = None
    if prize.voucher_template_id is not None:
        voucher, _ = vouchers.issue(
            session, prize.voucher_template_id, member_id, key=f"blindbox:{key}", now=now
        )
        voucher_id = voucher.id
    if prize.bonus_points:
        service.earn(
            session,
            member_id,
            prize.bonus_points,
            key=f"blindbox-bonus:{key}",
            reason=f"blind box prize: {prize.name}",
            now=now,
        )
    record = BlindBoxDraw(
        box_id=box.id,
        member_id=member_id,
        prize_id=prize.id,
        roll=roll,
        weights=weights,
        idempotency_key=key,
        posting_id=paid.posting.id,
        voucher_id=voucher_id,
        created_at=now,
    )
    session.add(record)
    session.flush()
    return DrawResult(record, prize, replayed=False)


def verify(session: Session, box_id: int) -> list[int]:
    """Ids of draws whose recorded prize does not follow from their roll and weights (empty: all fair)."""
    return [
        d.id
        for d in session.execute(select(BlindBoxDraw).where(BlindBoxDraw.box_id == box_id)).scalars()
        if pick(d.weights, d.roll) != d.prize_id
    ]


@dataclass(frozen=True, slots=True)
class PrizeStats:
    prize_id: int
    name: str
    weight: int
    configured_odds: float
    draws: int
    observed_share: float
    stock: int | None
    awarded: int


def stats(session: Session, box_id: int) -> list[PrizeStats]:
    """Per prize: configured odds (of the full pool), draws won and the observed share."""
    prizes = list(
        session.execute(
            select(BlindBoxPrize).where(BlindBoxPrize.box_id == box_id).order_by(BlindBoxPrize.id)
        ).scalars()
    )
    if not prizes:
        raise NotFound(f"no blind box {box_id} (or it has no prizes)")
    counts = dict(
        session.execute(
            select(BlindBoxDraw.prize_id, func.count())
            .where(BlindBoxDraw.box_id == box_id)
            .group_by(BlindBoxDraw.prize_id)
        ).all()
    )
    total_weight = sum(p.weight for p in prizes) or 1
    total = sum(counts.values()) or 1
    return [
        PrizeStats(
            p.id,
            p.name,
            p.weight,
            p.weight / total_weight,
            counts.get(p.id, 0),
            counts.get(p.id, 0) / total,
            p.stock,
            p.awarded,
        )
        for p in prizes
    ]


def create(session: Session, box: BlindBox, prizes: Sequence[BlindBoxPrize]) -> BlindBox:
    """Store a validated box and its prizes; a prize's voucher must be an active voucher template."""
    validate(box, prizes)
    wanted = {p.voucher_template_id for p in prizes if p.voucher_template_id is not None}
    active = set(
        session.execute(
            select(VoucherTemplate.id).where(VoucherTemplate.id.in_(wanted), VoucherTemplate.active.is_(True))
        ).scalars()
    )
    for i, p in enumerate(prizes):
        if p.voucher_template_id is not None and p.voucher_template_id not in active:
            raise BadRequest(
                f"prizes[{i}].voucher_template_id: no active voucher template #{p.voucher_template_id}"
            )
    session.add(box)
    session.flush()
    for prize in prizes:
        prize.box_id = box.id
        session.add(prize)
    session.flush()
    return box


def validate(box: BlindBox, prizes: Sequence[BlindBoxPrize]) -> None:
    """BadRequest naming what cannot work in a box and its prizes."""
    if not box.name.strip():
        raise BadRequest("name: required")
    if box.points_cost <= 0:
        raise BadRequest("points_cost: must be more than 0")
    if not prizes:
        raise BadRequest("prizes: at least one")
    for i, p in enumerate(prizes):
        if p.weight <= 0:
            raise BadRequest(f"prizes[{i}].weight: must be more than 0")
        if p.stock is not None and p.stock < 0:
            raise BadRequest(f"prizes[{i}].stock: must be 0 or more")
        if p.bonus_points < 0:
            raise BadRequest(f"prizes[{i}].bonus_points: must be 0 or more")
