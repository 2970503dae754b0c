"""Admin API of the loyalty programme: enrolment, a member's balance and lots, postings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import select

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.auth.principal import Principal
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import BadRequest, Forbidden, SiyuError
from siyu.loyalty import blind_boxes, referrals, rules, service, tiers, vouchers
from siyu.loyalty.models import (
    BlindBox,
    BlindBoxPrize,
    Member,
    Posting,
    PostingKind,
    ReferralProgram,
    VoucherTemplate,
)
from siyu.loyalty.schemas import (
    BlindBoxIn,
    BlindBoxOut,
    BlindBoxStatsOut,
    DrawOut,
    EnrolIn,
    IssueIn,
    LotOut,
    MemberOut,
    PostingIn,
    PostingOut,
    PrizeStatsOut,
    RedeemIn,
    ReferralNodeOut,
    ReferralProgramIn,
    ReferralProgramOut,
    ReferralsOut,
    RuleIn,
    RuleOut,
    RulePatch,
    TierIn,
    TierOut,
    TierPatch,
    VoucherOut,
    VoucherTemplateIn,
    VoucherTemplateOut,
)
from siyu.profiles import service as profiles_service

router = APIRouter(prefix="/api/v1/loyalty", tags=["loyalty"])

# Earning and adjusting points are programme decisions; redeeming happens at the counter too.
PROGRAMME_ROLES = frozenset({Role.admin, Role.hq})
SPEND_ROLES = PROGRAMME_ROLES | {Role.store_manager, Role.sales_associate}
ENROL_ROLES = SPEND_ROLES


def member_out(session: SessionDep, member: Member) -> MemberOut:
    return MemberOut(
        profile_id=member.profile_id,
        member_number=member.member_number,
        invite_code=member.invite_code,
        status=member.status,
        tier=member.tier,
        balance=member.balance,
        pending=member.pending,
        debt=member.debt,
        joined_at=member.joined_at,
        join_channel=member.join_channel,
        lots=[LotOut.model_validate(lot, from_attributes=True) for lot in service.lots(session, member.id)],
    )


def _member(session: SessionDep, principal: Principal, profile_id: int) -> Member:
    # The one access-scoping function decides whether the caller may see this customer at all.
    profile = profiles_service.get_or_raise(session, principal, profile_id)
    return service.get_member_by_profile_or_raise(session, profile.id)


@router.post("/members", response_model=MemberOut, summary="Enrol a customer (idempotent)")
def enrol(body: EnrolIn, principal: ReaderDep, session: SessionDep, response: Response) -> MemberOut:
    """201 with the new member, or 200 with the existing one."""
    if principal.role not in ENROL_ROLES:
        raise Forbidden(f"a {principal.role} cannot enrol members")
    profile = profiles_service.get_or_raise(session, principal, body.profile_id)
    member, created = service.enrol(session, profile.id, channel=body.channel or "api")
    response.status_code = 201 if created else 200
    return member_out(session, member)


@router.get("/members/{profile_id}", response_model=MemberOut, summary="Balance, tier and lots")
def get_member(profile_id: int, principal: ReaderDep, session: SessionDep) -> MemberOut:
    return member_out(session, _member(session, principal, profile_id))


@router.get("/members/{profile_id}/postings", response_model=list[PostingOut], summary="Ledger history")
def list_postings(
    profile_id: int,
    principal: ReaderDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before_id: int | None = None,
) -> list[PostingOut]:
    member = _member(session, principal, profile_id)
    return [posting_out(p) for p in service.history(session, member.id, limit=limit, before_id=before_id)]


def require_key(idempotency_key: str | None, scope: str) -> str:
    """The ledger key of a request's Idempotency-Key header, in the caller's scope; BadRequest without one."""
    if not idempotency_key:
        raise BadRequest("Idempotency-Key: send a unique key per request, so a retry never acts twice")
    return f"{scope}:{idempotency_key}"


def key_scope(principal: Principal) -> str:
    """Each caller's Idempotency-Keys are its own: another key or user sending the same one is another request."""
    return f"api:{'k' if principal.kind == 'api_key' else 'u'}{principal.id}"


def check_posting_role(principal: Principal, kind: str) -> None:
    """Forbidden unless principal's role may post this kind of posting."""
    allowed = SPEND_ROLES if kind == "spend" else PROGRAMME_ROLES
    if principal.role not in allowed:
        raise Forbidden(f"a {principal.role} cannot {kind} points")


def posting_out(posting: Posting) -> PostingOut:
    """The API shape of a posting."""
    # Built from the ledger's own typed values, not validated again (a tenth of the posting lane's CPU).
    fields = {name: getattr(posting, name) for name in PostingOut.model_fields}
    fields["kind"] = PostingKind(posting.kind)  # a replay read by bulk.fetch holds the text
    return PostingOut.model_construct(**fields)


@router.post(
    "/members/{profile_id}/postings", response_model=PostingOut, summary="Earn, spend or adjust points"
)
def create_posting(
    profile_id: int,
    body: PostingIn,
    principal: ReaderDep,
    session: SessionDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> PostingOut:
    """201 with the posting; a repeat of the Idempotency-Key answers 200 with the first result; 409 on overdraw.

    Requests with an API key are answered by `loyalty.lane` in front of this route, in groups; this
    route answers the console's (a session cookie) and any request the lane leaves to it.
    """
    check_posting_role(principal, body.kind)
    member = _member(session, principal, profile_id)
    (result,) = service.post_many(
        session, [posting_op(principal, member.id, body, require_key(idempotency_key, key_scope(principal)))]
    )
    if isinstance(result, SiyuError):
        raise result
    response.status_code = 200 if result.replayed else 201
    return posting_out(result.posting)


def posting_op(principal: Principal, member_id: int, body: PostingIn, key: str) -> service.PostingOp:
    """The ledger operation a posting request asks for (the route and `loyalty.lane` alike)."""
    return service.PostingOp(
        member_id,
        PostingKind(body.kind),
        body.points,
        key,
        reason=body.reason,
        actor=principal.actor,
        order_id=body.order_id,
    )


def _programme(principal: Principal, what: str) -> None:
    if principal.role not in PROGRAMME_ROLES:
        raise Forbidden(f"{what}: managed by admin and hq")


@router.post("/rules", response_model=RuleOut, status_code=201, summary="Create an earning rule or campaign")
def create_rule(body: RuleIn, principal: ReaderDep, session: SessionDep) -> RuleOut:
    _programme(principal, "earning rules")
    return RuleOut.model_validate(rules.create(session, **body.model_dump()), from_attributes=True)


@router.get("/rules", response_model=list[RuleOut], summary="Earning rules and campaigns")
def list_rules(principal: ReaderDep, session: SessionDep) -> list[RuleOut]:
    _programme(principal, "earning rules")
    return [RuleOut.model_validate(r, from_attributes=True) for r in rules.list_rules(session)]


@router.patch("/rules/{rule_id}", response_model=RuleOut, summary="Switch a rule on or off")
def patch_rule(rule_id: int, body: RulePatch, principal: ReaderDep, session: SessionDep) -> RuleOut:
    _programme(principal, "earning rules")
    return RuleOut.model_validate(rules.set_active(session, rule_id, body.active), from_attributes=True)


@router.post(
    "/voucher-templates",
    response_model=VoucherTemplateOut,
    status_code=201,
    summary="Create a voucher template",
)
def create_template(body: VoucherTemplateIn, principal: ReaderDep, session: SessionDep) -> VoucherTemplateOut:
    _programme(principal, "voucher templates")
    template = vouchers.create_template(session, **body.model_dump())
    return VoucherTemplateOut.model_validate(template, from_attributes=True)


@router.get(
    "/voucher-templates",
    response_model=list[VoucherTemplateOut],
    summary="Voucher templates and the reward catalogue",
)
def list_templates(principal: ReaderDep, session: SessionDep) -> list[VoucherTemplateOut]:
    rows = session.execute(select(VoucherTemplate).order_by(VoucherTemplate.id)).scalars()
    return [VoucherTemplateOut.model_validate(t, from_attributes=True) for t in rows]


@router.post(
    "/members/{profile_id}/vouchers", response_model=VoucherOut, summary="Issue a voucher to a member"
)
def issue_voucher(
    profile_id: int,
    body: IssueIn,
    principal: ReaderDep,
    session: SessionDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> VoucherOut:
    _programme(principal, "issuing vouchers by hand")
    member = _member(session, principal, profile_id)
    voucher, replayed = vouchers.issue(
        session, body.template_id, member.id, key=require_key(idempotency_key, key_scope(principal))
    )
    response.status_code = 200 if replayed else 201
    return VoucherOut.model_validate(voucher, from_attributes=True)


@router.post(
    "/members/{profile_id}/rewards", response_model=VoucherOut, summary="Buy a catalogue reward with points"
)
def buy_reward(
    profile_id: int,
    body: IssueIn,
    principal: ReaderDep,
    session: SessionDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> VoucherOut:
    if principal.role not in SPEND_ROLES:
        raise Forbidden(f"a {principal.role} cannot redeem points")
    member = _member(session, principal, profile_id)
    voucher, replayed = vouchers.buy_reward(
        session,
        body.template_id,
        member.id,
        key=require_key(idempotency_key, key_scope(principal)),
        actor=principal.actor,
    )
    response.status_code = 200 if replayed else 201
    return VoucherOut.model_validate(voucher, from_attributes=True)


@router.get("/members/{profile_id}/vouchers", response_model=list[VoucherOut], summary="A member's vouchers")
def list_vouchers(profile_id: int, principal: ReaderDep, session: SessionDep) -> list[VoucherOut]:
    member = _member(session, principal, profile_id)
    return [
        VoucherOut.model_validate(v, from_attributes=True)
        for v in vouchers.member_vouchers(session, member.id)
    ]


@router.post("/vouchers/{code}/redeem", response_model=VoucherOut, summary="Redeem a voucher (exactly once)")
def redeem_voucher(
    code: str,
    body: RedeemIn,
    principal: ReaderDep,
    session: SessionDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> VoucherOut:
    """200 with the redeemed voucher (again for a retry with the same key); 409 if used, expired or not valid here."""
    if principal.role not in SPEND_ROLES:
        raise Forbidden(f"a {principal.role} cannot redeem vouchers")
    voucher, _ = vouchers.redeem(
        session,
        code,
        key=require_key(idempotency_key, key_scope(principal)),
        channel=body.channel,
        order_total_fen=body.order_total_fen,
        order_id=body.order_id,
    )
    return VoucherOut.model_validate(voucher, from_attributes=True)


@router.post(
    "/blind-boxes", response_model=BlindBoxOut, status_code=201, summary="Create a blind box and its prizes"
)
def create_blind_box(body: BlindBoxIn, principal: ReaderDep, session: SessionDep) -> BlindBoxOut:
    _programme(principal, "blind boxes")
    box = BlindBox(name=body.name, points_cost=body.points_cost, active=True)
    prizes = [BlindBoxPrize(**p.model_dump(), awarded=0) for p in body.prizes]
    return BlindBoxOut.model_validate(blind_boxes.create(session, box, prizes), from_attributes=True)


@router.get(
    "/blind-boxes/{box_id}/stats", response_model=BlindBoxStatsOut, summary="Odds against the draw history"
)
def blind_box_stats(box_id: int, principal: ReaderDep, session: SessionDep) -> BlindBoxStatsOut:
    prizes = blind_boxes.stats(session, box_id)
    return BlindBoxStatsOut(
        box_id=box_id,
        draws=sum(p.draws for p in prizes),
        prizes=[PrizeStatsOut.model_validate(p, from_attributes=True) for p in prizes],
        unverifiable_draws=blind_boxes.verify(session, box_id),
    )


@router.post(
    "/members/{profile_id}/blind-boxes/{box_id}/draws",
    response_model=DrawOut,
    summary="Draw (paid with points)",
)
def draw_blind_box(
    profile_id: int,
    box_id: int,
    principal: ReaderDep,
    session: SessionDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> DrawOut:
    """201 with the prize; a retry with the same key answers the same draw; 409 without enough points or prizes."""
    if principal.role not in SPEND_ROLES:
        raise Forbidden(f"a {principal.role} cannot draw for a member")
    member = _member(session, principal, profile_id)
    result = blind_boxes.draw(
        session, box_id, member.id, key=require_key(idempotency_key, key_scope(principal))
    )
    response.status_code = 200 if result.replayed else 201
    return DrawOut(
        draw_id=result.draw.id,
        prize_id=result.prize.id,
        prize=result.prize.name,
        roll=result.draw.roll,
        voucher_id=result.draw.voucher_id,
        bonus_points=result.prize.bonus_points,
    )


@router.post("/tiers", response_model=TierOut, status_code=201, summary="Define a tier")
def create_tier(body: TierIn, principal: ReaderDep, session: SessionDep) -> TierOut:
    _programme(principal, "tiers")
    return TierOut.model_validate(tiers.create(session, **body.model_dump()), from_attributes=True)


@router.patch("/tiers/{tier_id}", response_model=TierOut, summary="Change a tier (not its rank)")
def update_tier(tier_id: int, body: TierPatch, principal: ReaderDep, session: SessionDep) -> TierOut:
    """Only the fields sent change; thresholds must still rise with rank (400), a name stay unique (409)."""
    _programme(principal, "tiers")
    tier = tiers.get_or_raise(session, tier_id)
    # A threshold may be cleared (null); the name, multiplier and benefits are kept when sent as null.
    changes = {
        k: v
        for k, v in body.model_dump(exclude_unset=True).items()
        if v is not None or k.startswith("threshold_")
    }
    tiers.update(session, tier, **changes)
    auth_service.audit(session, principal, "loyalty.tier.update", "tier", tier.id, changes)
    return TierOut.model_validate(tier, from_attributes=True)


@router.get("/tiers", response_model=list[TierOut], summary="Tiers, entry tier first")
def list_tiers(principal: ReaderDep, session: SessionDep) -> list[TierOut]:
    return [TierOut.model_validate(t, from_attributes=True) for t in tiers.list_tiers(session)]


@router.post(
    "/referral-program",
    response_model=ReferralProgramOut,
    status_code=201,
    summary="Set the referral programme",
)
def set_referral_program(
    body: ReferralProgramIn, principal: ReaderDep, session: SessionDep
) -> ReferralProgramOut:
    """The new programme replaces the active one (kept, inactive, for the record)."""
    _programme(principal, "the referral programme")
    if body.cap_per_30_days <= 0:
        raise BadRequest("cap_per_30_days: must be more than 0")
    if body.referrer_points < 0 or body.friend_points < 0:
        raise BadRequest("referrer_points, friend_points: must be 0 or more")
    for field in ("referrer_template_id", "friend_template_id"):
        template_id = getattr(body, field)
        if template_id is not None and session.get(VoucherTemplate, template_id) is None:
            raise BadRequest(f"{field}: no voucher template {template_id}")
    if body.active:
        for old in referrals.list_programs(session):
            old.active = False
    program = ReferralProgram(**body.model_dump())
    session.add(program)
    session.flush()
    return ReferralProgramOut.model_validate(program, from_attributes=True)


def _node(node: referrals.Node) -> ReferralNodeOut:
    return ReferralNodeOut(
        profile_id=node.profile_id,
        member_number=node.member_number,
        status=node.status,
        reason=node.reason,
        created_at=node.created_at,
        friends=[_node(f) for f in node.friends],
    )


@router.get(
    "/members/{profile_id}/referrals",
    response_model=ReferralsOut,
    summary="Invite code, referral stats and tree",
)
def member_referrals(profile_id: int, principal: ReaderDep, session: SessionDep) -> ReferralsOut:
    member = _member(session, principal, profile_id)
    return ReferralsOut(
        invite_code=member.invite_code,
        stats=referrals.stats(session, member.id),
        friends=[_node(n) for n in referrals.tree(session, member)],
    )
