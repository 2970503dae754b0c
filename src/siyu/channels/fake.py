"""A local stand-in for api.weixin.qq.com and qyapi.weixin.qq.com, for the tests and `siyu demo`.

No WeChat host is reachable from a test machine, so the outbound clients are tested against this: an
ASGI app that answers the documented request shapes with the documented answer shapes and error codes
(wechat-protocol.md §2 to §3). It is a fake, and says so: it keeps its state in memory, knows only the
accounts registered with it, and delivers nothing. Switches let a test expire every token, answer the
next calls with -1 (busy) or a rate limit, and inspect what was "sent".
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class FakeState:
    """Everything the fake knows and every call it answered."""

    apps: dict[str, str] = field(default_factory=dict)  # app id or corp id -> secret
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (app id, expires at)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # OA openid -> user/info answer
    contacts: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # external_userid -> externalcontact/get
    welcome_codes: set[str] = field(default_factory=set)  # codes still usable
    login_codes: dict[str, dict[str, str]] = field(default_factory=dict)  # wx.login code -> openid, unionid
    phone_codes: dict[str, str] = field(default_factory=dict)  # getPhoneNumber code -> mainland phone
    subscriptions: set[tuple[str, str]] = field(default_factory=set)  # (openid, template id) accepted once
    phone_country_code: int | str = "86"  # WeChat has sent it both as a number and as a string
    sent: list[tuple[str, dict[str, Any]]] = field(
        default_factory=list
    )  # (api, body) of what was "delivered"
    calls: list[str] = field(default_factory=list)
    fail_next: list[tuple[int, str]] = field(default_factory=list)  # errcodes to answer next, in order
    kefu_open: set[str] = field(default_factory=set)  # openids that wrote to the account within 48 h
    # The demo: every openid follows and every external contact is the sender's (messages to the demo's
    # generated customers are accepted).
    accept_any_user: bool = False
    mass_jobs: dict[str, int] = field(default_factory=dict)  # clientmsgid -> msg_id
    tags: dict[int, dict[str, Any]] = field(default_factory=dict)  # tag id -> {"name", "openids"}
    group_msgs: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # msgid -> {"sender", "customers", "sent"}
    transfers: dict[str, list[float]] = field(default_factory=dict)  # external_userid -> times transferred
    behavior: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # userid -> daily rows
    token_lifetime: int = 7200
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Asked for the secret of an app id the fake was not told about (the demo: siyu's own accounts).
    lookup: Callable[[str], str | None] | None = None

    def register(self, app_id: str, secret: str) -> None:
        self.apps[app_id] = secret

    def knows(self, app_id: str) -> bool:
        """Whether app_id is registered, asking lookup the first time."""
        if app_id not in self.apps and self.lookup is not None:
            secret = self.lookup(app_id)
            if secret is not None:
                self.apps[app_id] = secret
        return app_id in self.apps

    def expire_tokens(self) -> None:
        """Every token issued so far now answers 42001, as after WeChat's 2 hours."""
        with self.lock:
            self.tokens = {t: (app, 0.0) for t, (app, _) in self.tokens.items()}

    def confirm_group_msg(self, msgid: str) -> None:
        """The associate taps "send" in WeCom: the company mass message goes out."""
        with self.lock:
            self.group_msgs[msgid]["sent"] = int(time.time())

    def fail(self, errcode: int, errmsg: str, times: int = 1) -> None:
        """Answer the next `times` API calls (not token fetches) with errcode."""
        with self.lock:
            self.fail_next.extend([(errcode, errmsg)] * times)


ERRMSG = {
    40001: "invalid credential, access_token is invalid or not latest",
    42001: "access_token expired",
    40013: "invalid appid",
    40125: "invalid appsecret",
    40003: "invalid openid",
    40032: "invalid openid list size",
    84061: "not external contact",
}


def _err(errcode: int, errmsg: str | None = None) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "errmsg": errmsg or ERRMSG.get(errcode, "error")})


def create_fake_app(state: FakeState | None = None) -> FastAPI:
    """The fake's ASGI app; its state is `app.state.fake`."""
    fake = state or FakeState()
    app = FastAPI(title="fake WeChat API (siyu tests and demo)")
    app.state.fake = fake

    def issue(app_id: str) -> JSONResponse:
        token = "FAKE_" + secrets.token_hex(16)
        with fake.lock:
            fake.tokens[token] = (app_id, time.time() + fake.token_lifetime)
        return JSONResponse({"access_token": token, "expires_in": fake.token_lifetime})

    @app.get("/cgi-bin/token")
    def oa_token(appid: str = "", secret: str = "", grant_type: str = "") -> JSONResponse:
        fake.calls.append("token")
        if grant_type != "client_credential":
            return _err(40002, "invalid grant_type")
        if not fake.knows(appid):
            return _err(40013)
        if fake.apps[appid] != secret:
            return _err(40125)
        return issue(appid)

    @app.get("/cgi-bin/gettoken")
    def wecom_token(corpid: str = "", corpsecret: str = "") -> JSONResponse:
        fake.calls.append("gettoken")
        if not fake.knows(corpid):
            return _err(40013, "invalid corpid")
        if fake.apps[corpid] != corpsecret:
            return _err(40001, "invalid secret")
        return issue(corpid)

    def check(request: Request, api: str) -> JSONResponse | None:
        fake.calls.append(api)
        with fake.lock:
            if fake.fail_next:
                errcode, errmsg = fake.fail_next.pop(0)
                return _err(errcode, errmsg)
            entry = fake.tokens.get(request.query_params.get("access_token", ""))
        if entry is None:
            return _err(40001)
        if entry[1] < time.time():
            return _err(42001)
        return None

    def follower(openid: str) -> dict[str, Any] | None:
        """user/info's answer for openid; None when the fake does not know the follower."""
        user = fake.users.get(openid)
        if user is None and fake.accept_any_user and openid:
            user = {}  # the demo: every openid is a follower WeChat knows nothing more about
        return None if user is None else {"subscribe": 1, "openid": openid, "language": "zh_CN", **user}

    @app.get("/cgi-bin/user/info")
    def user_info(request: Request, openid: str = "") -> JSONResponse:
        if (denied := check(request, "user/info")) is not None:
            return denied
        user = follower(openid)
        return JSONResponse(user) if user is not None else _err(40003)

    @app.post("/cgi-bin/user/info/batchget")
    async def user_info_batch(request: Request) -> JSONResponse:
        if (denied := check(request, "user/info/batchget")) is not None:
            return denied
        wanted = (await request.json()).get("user_list") or []
        if not 0 < len(wanted) <= 100:
            return _err(40032)
        answers = [follower(str(entry.get("openid") or "")) for entry in wanted]
        if None in answers:
            return _err(40003)  # WeChat refuses the whole call for one openid it does not know
        return JSONResponse({"user_info_list": answers})

    @app.post("/cgi-bin/qrcode/create")
    async def qrcode_create(request: Request) -> JSONResponse:
        if (denied := check(request, "qrcode/create")) is not None:
            return denied
        body = await request.json()
        scene = body.get("action_info", {}).get("scene", {})
        if not (scene.get("scene_str") or scene.get("scene_id")):
            return _err(40053, "invalid action info")
        ticket = "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL" + secrets.token_hex(8)
        answer: dict[str, Any] = {"ticket": ticket, "url": f"http://weixin.qq.com/q/{secrets.token_hex(10)}"}
        if body.get("action_name") in ("QR_SCENE", "QR_STR_SCENE"):
            answer["expire_seconds"] = int(body.get("expire_seconds") or 60)
        fake.sent.append(("qrcode/create", body))
        return JSONResponse(answer)

    @app.post("/cgi-bin/message/template/send")
    async def template_send(request: Request) -> JSONResponse:
        if (denied := check(request, "message/template/send")) is not None:
            return denied
        body = await request.json()
        if body.get("touser") not in fake.users and not fake.accept_any_user:
            return _err(40003)
        fake.sent.append(("message/template/send", body))
        return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": 200000000 + len(fake.sent)})

    @app.post("/cgi-bin/message/custom/send")
    async def custom_send(request: Request) -> JSONResponse:
        if (denied := check(request, "message/custom/send")) is not None:
            return denied
        body = await request.json()
        if body.get("touser") not in fake.users:
            return _err(40003)
        if body.get("touser") not in fake.kefu_open:
            # The fake keeps WeChat's rule: no customer-service message outside the 48-hour window.
            return _err(45015, "response out of time limit or subscription is canceled")
        fake.sent.append(("message/custom/send", body))
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    @app.get("/cgi-bin/externalcontact/get")
    def external_get(request: Request, external_userid: str = "") -> JSONResponse:
        if (denied := check(request, "externalcontact/get")) is not None:
            return denied
        contact = fake.contacts.get(external_userid)
        if contact is None:
            return _err(84061)
        return JSONResponse({"errcode": 0, "errmsg": "ok", **contact, "next_cursor": ""})

    @app.post("/cgi-bin/externalcontact/send_welcome_msg")
    async def send_welcome(request: Request) -> JSONResponse:
        if (denied := check(request, "externalcontact/send_welcome_msg")) is not None:
            return denied
        body = await request.json()
        code = body.get("welcome_code")
        with fake.lock:
            if code not in fake.welcome_codes:
                # A WelcomeCode works once and for 20 s; after that WeCom refuses it.
                return _err(41051, "externaluser has started chatting")
            fake.welcome_codes.discard(code)
        fake.sent.append(("externalcontact/send_welcome_msg", body))
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    @app.post("/cgi-bin/externalcontact/add_contact_way")
    async def add_contact_way(request: Request) -> JSONResponse:
        if (denied := check(request, "externalcontact/add_contact_way")) is not None:
            return denied
        body = await request.json()
        if not body.get("user") or len(str(body.get("state", ""))) > 30:
            return _err(40058, "invalid parameter: user or state")
        fake.sent.append(("externalcontact/add_contact_way", body))
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "ok",
                "config_id": secrets.token_hex(16),
                "qr_code": f"http://p.qpic.cn/wwhead/{secrets.token_hex(12)}",
            }
        )

    @app.post("/cgi-bin/message/mass/sendall")
    @app.post("/cgi-bin/message/mass/send")
    async def mass_send(request: Request) -> JSONResponse:
        api = request.url.path.rsplit("/", 1)[-1]
        if (denied := check(request, f"message/mass/{api}")) is not None:
            return denied
        body = await request.json()
        if api == "send" and not 2 <= len(body.get("touser") or []) <= 10_000:
            return _err(40130, "invalid openid list size, at least two openid")
        client_id = str(body.get("clientmsgid") or "")
        with fake.lock:
            if client_id and client_id in fake.mass_jobs:
                # WeChat refuses a second job with the same clientmsgid and names the first one.
                return JSONResponse(
                    {"errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": fake.mass_jobs[client_id]}
                )
            msg_id = 1000 + len(fake.mass_jobs)
            if client_id:
                fake.mass_jobs[client_id] = msg_id
        fake.sent.append((f"message/mass/{api}", body))
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "send job submission success",
                "msg_id": msg_id,
                "msg_data_id": 2247483000 + msg_id,
            }
        )

    @app.post("/cgi-bin/tags/create")
    async def tags_create(request: Request) -> JSONResponse:
        if (denied := check(request, "tags/create")) is not None:
            return denied
        name = str((await request.json()).get("tag", {}).get("name", ""))
        with fake.lock:
            if any(t["name"] == name for t in fake.tags.values()):
                return _err(45157, "invalid tag name (duplicate)")
            tag_id = 100 + len(fake.tags)
            fake.tags[tag_id] = {"name": name, "openids": set()}
        return JSONResponse({"tag": {"id": tag_id, "name": name}})

    @app.get("/cgi-bin/tags/get")
    async def tags_get(request: Request) -> JSONResponse:
        if (denied := check(request, "tags/get")) is not None:
            return denied
        with fake.lock:
            tags = [{"id": i, "name": t["name"], "count": len(t["openids"])} for i, t in fake.tags.items()]
        return JSONResponse({"tags": tags})

    @app.post("/cgi-bin/tags/members/batchtagging")
    @app.post("/cgi-bin/tags/members/batchuntagging")
    async def tags_members(request: Request) -> JSONResponse:
        untag = request.url.path.endswith("batchuntagging")
        if (denied := check(request, "tags/members")) is not None:
            return denied
        body = await request.json()
        openids = body.get("openid_list") or []
        if len(openids) > 50:
            return _err(40032, "invalid openid list size")
        tag = fake.tags.get(int(body.get("tagid", -1)))
        if tag is None:
            return _err(45059, "tag id not exist")
        with fake.lock:
            if untag:
                tag["openids"].difference_update(openids)
            else:
                tag["openids"].update(openids)
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    @app.post("/cgi-bin/externalcontact/add_msg_template")
    async def add_msg_template(request: Request) -> JSONResponse:
        if (denied := check(request, "externalcontact/add_msg_template")) is not None:
            return denied
        body = await request.json()
        if len(body.get("attachments") or []) > 9:
            return _err(41063, "attachments exceed limit")
        customers = list(body.get("external_userid") or [])
        known = [c for c in customers if c in fake.contacts or fake.accept_any_user]
        msgid = "msg" + secrets.token_hex(8)
        with fake.lock:
            fake.group_msgs[msgid] = {"sender": body.get("sender"), "customers": known, "sent": 0}
        fake.sent.append(("externalcontact/add_msg_template", body))
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "ok",
                "fail_list": [c for c in customers if c not in known],
                "msgid": msgid,
            }
        )

    @app.post("/cgi-bin/externalcontact/get_groupmsg_send_result")
    async def groupmsg_result(request: Request) -> JSONResponse:
        if (denied := check(request, "externalcontact/get_groupmsg_send_result")) is not None:
            return denied
        body = await request.json()
        job = fake.group_msgs.get(str(body.get("msgid")))
        if job is None:
            return _err(41075, "invalid msgid")
        sent = job["sent"]
        rows = [
            {"external_userid": c, "userid": job["sender"], "status": 1 if sent else 0, "send_time": sent}
            for c in job["customers"]
        ]
        return JSONResponse({"errcode": 0, "errmsg": "ok", "send_list": rows, "next_cursor": ""})

    @app.post("/cgi-bin/externalcontact/transfer_customer")
    @app.post("/cgi-bin/externalcontact/resigned/transfer_customer")
    async def transfer(request: Request) -> JSONResponse:
        if (denied := check(request, "externalcontact/transfer_customer")) is not None:
            return denied
        body = await request.json()
        customers = list(body.get("external_userid") or [])
        if not customers or len(customers) > 100:
            return _err(40058, "external_userid: 1 to 100 per call")
        now = time.time()
        answer = []
        with fake.lock:
            for c in customers:
                recent = [t for t in fake.transfers.get(c, []) if now - t < 90 * 86400]
                # Twice in 90 days at most (the fake answers 40096, the code of the protocol note's example).
                if c not in fake.contacts or len(recent) >= 2:
                    answer.append({"external_userid": c, "errcode": 40096})
                    continue
                fake.transfers[c] = [*recent, now]
                answer.append({"external_userid": c, "errcode": 0})
        fake.sent.append((request.url.path.removeprefix("/cgi-bin/"), body))
        return JSONResponse({"errcode": 0, "errmsg": "ok", "customer": answer})

    @app.post("/cgi-bin/externalcontact/resigned/transfer_result")
    async def transfer_result(request: Request) -> JSONResponse:
        if (denied := check(request, "externalcontact/resigned/transfer_result")) is not None:
            return denied
        rows = [
            {"external_userid": c, "status": 2, "takeover_time": int(times[-1]) + 86400}
            for c, times in fake.transfers.items()
        ]
        return JSONResponse({"errcode": 0, "errmsg": "ok", "customer": rows, "next_cursor": ""})

    @app.post("/cgi-bin/externalcontact/get_user_behavior_data")
    async def behavior(request: Request) -> JSONResponse:
        if (denied := check(request, "externalcontact/get_user_behavior_data")) is not None:
            return denied
        body = await request.json()
        start, end = int(body.get("start_time", 0)), int(body.get("end_time", 0))
        if end < start or end - start > 30 * 86400:
            return _err(40058, "the time range must be within 30 days")
        rows: list[dict[str, Any]] = []
        for userid in body.get("userid") or []:
            rows.extend(r for r in fake.behavior.get(userid, []) if start <= r["stat_time"] <= end)
        return JSONResponse({"errcode": 0, "errmsg": "ok", "behavior_data": rows})

    @app.post("/_test/wx-login")
    async def mint_login_code(request: Request) -> JSONResponse:
        """What wx.login() gives the Mini Program on a phone: a one-time code for this openid (and unionid)."""
        body = await request.json()
        openid = str(body.get("openid") or "")
        if not openid:
            return JSONResponse({"detail": "openid: required"}, status_code=400)
        user = {"openid": openid, **({"unionid": str(body["unionid"])} if body.get("unionid") else {})}
        code = "fake-login-" + secrets.token_hex(8)
        with fake.lock:
            fake.login_codes[code] = user
        return JSONResponse({"code": code})

    @app.post("/_test/phone-code")
    async def mint_phone_code(request: Request) -> JSONResponse:
        """What the getPhoneNumber button gives the Mini Program when she agrees: a one-time code."""
        body = await request.json()
        phone = str(body.get("phone") or "")
        if not phone:
            return JSONResponse({"detail": "phone: required"}, status_code=400)
        code = "fake-phone-" + secrets.token_hex(8)
        with fake.lock:
            fake.phone_codes[code] = phone
        return JSONResponse({"code": code})

    @app.get("/sns/jscode2session")
    def jscode2session(
        appid: str = "", secret: str = "", js_code: str = "", grant_type: str = ""
    ) -> JSONResponse:
        fake.calls.append("jscode2session")
        with fake.lock:
            if fake.fail_next:
                errcode, errmsg = fake.fail_next.pop(0)
                return _err(errcode, errmsg)
            if not fake.knows(appid) or fake.apps.get(appid) != secret or grant_type != "authorization_code":
                return _err(40125 if appid in fake.apps else 40013)
            # A login code works once (and for 5 minutes).
            user = fake.login_codes.pop(js_code, None)
        if user is None:
            return _err(40029, "invalid code")
        return JSONResponse({"session_key": secrets.token_urlsafe(16), "expires_in": 7200, **user})

    @app.post("/wxa/business/getuserphonenumber")
    async def phone_number(request: Request) -> JSONResponse:
        if (denied := check(request, "getuserphonenumber")) is not None:
            return denied
        body = await request.json()
        with fake.lock:
            phone = fake.phone_codes.pop(str(body.get("code", "")), None)
        if phone is None:
            return _err(40029, "invalid code")
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "ok",
                "phone_info": {
                    "phoneNumber": phone,
                    "purePhoneNumber": phone,
                    "countryCode": fake.phone_country_code,
                    "watermark": {"timestamp": int(time.time()), "appid": ""},
                },
            }
        )

    @app.post("/cgi-bin/message/subscribe/send")
    async def subscribe_send(request: Request) -> JSONResponse:
        if (denied := check(request, "message/subscribe/send")) is not None:
            return denied
        body = await request.json()
        key = (str(body.get("touser")), str(body.get("template_id")))
        with fake.lock:
            if key not in fake.subscriptions:
                return _err(43101, "user refuse to accept the msg")
            # Each acceptance of a one-time subscription allows one message.
            fake.subscriptions.discard(key)
        fake.sent.append(("message/subscribe/send", body))
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    return app
