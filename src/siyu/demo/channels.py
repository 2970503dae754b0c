"""The demo brand's WeChat accounts, answered by the local fake WeChat API that `siyu demo` serves.

The accounts' secrets are random and known only to this database and the fake: nothing here can reach
WeChat. Each store gets a store QR code and each sales associate a 「联系我」 code, made as the fake would
answer qrcode/create and add_contact_way (generated, not created on WeChat).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import Role, User
from siyu.channels import service
from siyu.channels.models import ChannelKind, ContactWay, OaType, QrPurpose, WechatQrCode
from siyu.clienteling.models import Store

OA_NAME, WECOM_NAME, MP_NAME = "tos-oa", "tos-wecom", "tos-mp"
WELCOME = "您好，我是苏韵的时装顾问，很高兴为您服务！Welcome to Taste of Su."


@dataclass(frozen=True, slots=True)
class DemoChannels:
    """What a demo user needs to sign test pushes to the callbacks."""

    oa_token: str
    oa_aes_key: str
    wecom_token: str
    wecom_aes_key: str


def _aes_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def ensure_channels(session: Session) -> DemoChannels:
    """The demo's Official Account, WeCom corp and Mini Program, with a QR code per store and a contact
    code per associate; existing ones are kept."""
    if service.get_account(session, ChannelKind.oa, OA_NAME) is None:
        service.create_account(
            session,
            kind=ChannelKind.oa,
            name=OA_NAME,
            app_id="wxdemo0tasteofsu",
            secret=secrets.token_hex(16),
            token=secrets.token_hex(8),
            aes_key_text=_aes_key(),
            oa_type=OaType.service,
        )
    if service.get_account(session, ChannelKind.wecom, WECOM_NAME) is None:
        service.create_account(
            session,
            kind=ChannelKind.wecom,
            name=WECOM_NAME,
            app_id="wwdemo0tasteofsu",
            secret=secrets.token_hex(16),
            token=secrets.token_hex(8),
            aes_key_text=_aes_key(),
            welcome_text=WELCOME,
        )
    if service.get_account(session, ChannelKind.miniprogram, MP_NAME) is None:
        service.create_account(
            session,
            kind=ChannelKind.miniprogram,
            name=MP_NAME,
            app_id="wxdemo0tosminiapp",
            secret=secrets.token_hex(16),
        )
    oa = service.get_account_or_raise(session, ChannelKind.oa, OA_NAME)
    corp = service.get_account_or_raise(session, ChannelKind.wecom, WECOM_NAME)
    have_qr = set(
        session.execute(select(WechatQrCode.scene).where(WechatQrCode.account_id == oa.id)).scalars()
    )
    for store in session.execute(select(Store).order_by(Store.id)).scalars():
        scene = f"store-{store.code}".lower()
        if scene not in have_qr:
            session.add(
                WechatQrCode(
                    account_id=oa.id,
                    scene=scene,
                    name=f"{store.name} counter",
                    purpose=QrPurpose.store,
                    store_id=store.id,
                    url=f"http://weixin.qq.com/q/demo-{scene}",
                )
            )
    have_way = set(
        session.execute(select(ContactWay.state).where(ContactWay.account_id == corp.id)).scalars()
    )
    associates = session.execute(
        select(User)
        .where(User.role == Role.sales_associate, User.wecom_userid.is_not(None))
        .order_by(User.id)
    ).scalars()
    for sa in associates:
        state = f"sa-{sa.wecom_userid}"[:30]
        if state not in have_way:
            session.add(
                ContactWay(
                    account_id=corp.id,
                    state=state,
                    name=f"{sa.display_name or sa.username} card",
                    user_id=sa.id,
                    store_id=sa.store_id,
                    config_id=f"demo-{state}",
                    qr_url=f"https://wework.qpic.cn/demo/{state}",
                )
            )
    session.flush()
    return DemoChannels(
        oa_token=service.credentials(oa).token or "",
        oa_aes_key=service.credentials(oa).aes_key or "",
        wecom_token=service.credentials(corp).token or "",
        wecom_aes_key=service.credentials(corp).aes_key or "",
    )


@dataclass(frozen=True, slots=True)
class Attribution:
    """What the callbacks add to a follow through a store's QR code and to an add through a 「联系我」 code."""

    qr_by_store: dict[str, tuple[int, str]]  # store code -> (QR code id, its name)
    way_by_associate: dict[str, tuple[int, str]]  # WeCom UserID -> (contact way id, its name)

    @classmethod
    def load(cls, session: Session) -> Attribution:
        """The demo's codes, as ensure_channels made them."""
        qr = {
            code: (qr_id, name)
            for qr_id, name, code in session.execute(
                select(WechatQrCode.id, WechatQrCode.name, Store.code).join(
                    Store, Store.id == WechatQrCode.store_id
                )
            )
        }
        ways = {
            userid: (way_id, name)
            for way_id, name, userid in session.execute(
                select(ContactWay.id, ContactWay.name, User.wecom_userid).join(
                    User, User.id == ContactWay.user_id
                )
            )
            if userid
        }
        return cls(qr, ways)

    def apply(self, events: list[dict[str, object]]) -> None:
        """Add to the generated events the code ids the callbacks would have found (oa._attribution, wecom)."""
        for ev in events:
            props = ev.get("properties")
            if not isinstance(props, dict):
                continue
            scene = props.get("qr_scene")
            if ev.get("event") == "Official Account Followed" and isinstance(scene, str):
                found = self.qr_by_store.get(scene.removeprefix("store:"))
                if scene.startswith("store:") and found:
                    props.update(qr_code_id=found[0], qr_code=found[1], qr_purpose=QrPurpose.store.value)
            associate = props.get("associate")
            if ev.get("event") == "WeCom Contact Added" and isinstance(associate, str):
                way = self.way_by_associate.get(associate)
                if way:
                    props.update(contact_way_id=way[0], contact_way=way[1])
