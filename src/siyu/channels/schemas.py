"""API shapes of channel accounts: secrets go in, never come out."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from siyu.channels.models import ChannelKind, OaType, QrPurpose
from siyu.schemas import Input


class ChannelAccountCreate(Input):
    kind: ChannelKind
    name: str = Field(description="Slug used in the callback URL, e.g. taste-of-su-oa")
    app_id: str = Field(description="App id of the Official Account or Mini Program; corp id for WeCom")
    secret: str = Field(description="App secret; for WeCom the customer-contact secret")
    token: str | None = Field(default=None, description="Callback token (Official Account, WeCom)")
    aes_key: str | None = Field(default=None, description="EncodingAESKey, 43 characters")
    oa_type: OaType | None = None
    agent_id: str | None = None
    welcome_text: str = Field(default="", description="WeCom: the welcome message sent on each add")


class ChannelAccountOut(BaseModel):
    id: int
    kind: ChannelKind
    name: str
    app_id: str
    oa_type: OaType | None
    agent_id: str | None
    has_aes_key: bool
    callback_path: str | None
    welcome_text: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None


class SessionIn(BaseModel):
    code: str = Field(description="The code from wx.login()")
    account: str | None = Field(default=None, description="Mini Program account name; optional with one")


class SessionOut(BaseModel):
    session: str = Field(
        description="Opaque token for /mp/v1/phone; WeChat's session_key stays on the server"
    )
    openid: str
    unionid: str | None
    expires_at: dt.datetime


class PhoneIn(BaseModel):
    session: str
    code: str = Field(description="The code from the getPhoneNumber button")
    account: str | None = None


class PhoneOut(BaseModel):
    phone: str = Field(description="The phone, masked")
    consent: str = "recorded"


class QrCodeCreate(Input):
    name: str = Field(description="What the code is for, e.g. 'Nanjing Road counter card'")
    purpose: QrPurpose
    scene: str | None = Field(default=None, description="Scene string (generated when omitted)")
    store: str | None = Field(default=None, description="Store code (purpose store)")
    associate: str | None = Field(
        default=None, description="Sales associate's WeCom UserID (purpose associate)"
    )
    campaign: str | None = None
    placement: str | None = Field(default=None, description="Ad placement (purpose placement)")
    expire_seconds: int | None = Field(
        default=None, description="Temporary code lifetime; permanent when omitted"
    )


class QrCodeOut(BaseModel):
    id: int
    scene: str
    name: str
    purpose: QrPurpose
    store_id: int | None
    user_id: int | None
    campaign: str | None
    placement: str | None
    url: str | None
    expires_at: dt.datetime | None
    scans: int
    follows: int
    image_svg: str
    image_png: str


class ContactWayCreate(Input):
    name: str
    associate: str = Field(description="The sales associate's WeCom UserID")
    store: str | None = Field(default=None, description="Store code; the associate's store when omitted")
    campaign: str | None = None
    state: str | None = Field(default=None, description="Up to 30 characters (generated when omitted)")


class ContactWayOut(BaseModel):
    id: int
    state: str
    name: str
    config_id: str | None
    user_id: int | None
    store_id: int | None
    campaign: str | None
    qr_url: str | None
    adds: int
