"""WeCom customer-contact API calls (qyapi.weixin.qq.com/cgi-bin/externalcontact)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from siyu.channels.outbound.base import ApiClient

SHANGHAI = ZoneInfo("Asia/Shanghai")  # WeCom's days are China days


class WeComClient(ApiClient):
    """A WeCom corp's customer-contact API."""

    def get_external_contact(self, external_userid: str) -> dict[str, Any]:
        """externalcontact/get: the customer (name, type, unionid when bound) and who follows them."""
        return self.call("GET", "/cgi-bin/externalcontact/get", params={"external_userid": external_userid})

    def send_welcome_msg(
        self, welcome_code: str, text: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """externalcontact/send_welcome_msg: once per WelcomeCode, within 20 s of the add."""
        return self.call(
            "POST",
            "/cgi-bin/externalcontact/send_welcome_msg",
            json={"welcome_code": welcome_code, "text": {"content": text}},
            idempotency_key=idempotency_key,
        )

    def add_contact_way(
        self, user_ids: list[str], state: str, *, remark: str = "", idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """externalcontact/add_contact_way: a 「联系我」 QR code (type 1 single, 2 several staff)."""
        return self.call(
            "POST",
            "/cgi-bin/externalcontact/add_contact_way",
            json={
                "type": 1 if len(user_ids) == 1 else 2,
                "scene": 2,
                "remark": remark[:30],
                "state": state,
                "user": user_ids,
                "skip_verify": True,
            },
            idempotency_key=idempotency_key,
        )

    def add_msg_template(
        self,
        sender: str,
        external_userids: list[str],
        text: str,
        *,
        attachments: list[dict[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """add_msg_template (company mass message, single chats): created here, sent only once the
        associate confirms it in WeCom; poll get_groupmsg_send_result for that."""
        if attachments and len(attachments) > 9:
            raise ValueError("at most 9 attachments")
        body: dict[str, Any] = {
            "chat_type": "single",
            "external_userid": external_userids,
            "sender": sender,
            "text": {"content": text},
        }
        if attachments:
            body["attachments"] = attachments
        return self.call(
            "POST", "/cgi-bin/externalcontact/add_msg_template", json=body, idempotency_key=idempotency_key
        )

    def group_msg_send_result(self, msgid: str, userid: str) -> list[dict[str, Any]]:
        """get_groupmsg_send_result, every page: per customer, status 0 not sent yet, 1 sent,
        2 not a contact, 3 already received another mass message."""
        results: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self.call(
                "POST",
                "/cgi-bin/externalcontact/get_groupmsg_send_result",
                json={"msgid": msgid, "userid": userid, "limit": 1000, "cursor": cursor},
            )
            results.extend(page.get("send_list") or [])
            cursor = str(page.get("next_cursor") or "")
            if not cursor:
                return results

    def transfer_customers(
        self,
        handover: str,
        takeover: str,
        external_userids: list[str],
        *,
        message: str | None = None,
        resigned: bool = False,
    ) -> list[dict[str, Any]]:
        """transfer_customer (or resigned/transfer_customer for a departed associate), 100 per call;
        per customer errcode 0 when the transfer started (it completes after 24 h unless refused)."""
        path = "/cgi-bin/externalcontact/" + (
            "resigned/transfer_customer" if resigned else "transfer_customer"
        )
        outcome: list[dict[str, Any]] = []
        for i in range(0, len(external_userids), 100):
            body: dict[str, Any] = {
                "handover_userid": handover,
                "takeover_userid": takeover,
                "external_userid": external_userids[i : i + 100],
            }
            if message and not resigned:
                body["transfer_success_msg"] = message
            outcome.extend(self.call("POST", path, json=body).get("customer") or [])
        return outcome

    def resigned_transfer_result(self, handover: str, takeover: str) -> list[dict[str, Any]]:
        """resigned/transfer_result, every page: status 1 done, 2 waiting, 3 refused, 4 takeover limit."""
        results: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self.call(
                "POST",
                "/cgi-bin/externalcontact/resigned/transfer_result",
                json={"handover_userid": handover, "takeover_userid": takeover, "cursor": cursor},
            )
            results.extend(page.get("customer") or [])
            cursor = str(page.get("next_cursor") or "")
            if not cursor:
                return results

    def user_behavior(self, userid: str, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
        """get_user_behavior_data for one associate per day, start to end inclusive (≤ 30 days, last 180).

        One user id per call: WeCom sums several into one figure."""
        if end < start:
            raise ValueError("end is before start")
        if (end - start).days + 1 > 30:
            raise ValueError("at most 30 days per call")
        if (dt.date.today() - start).days > 180:
            raise ValueError("WeCom keeps the last 180 days only")
        start_ts = int(dt.datetime.combine(start, dt.time(), tzinfo=SHANGHAI).timestamp())
        end_ts = int(dt.datetime.combine(end, dt.time(), tzinfo=SHANGHAI).timestamp())
        answer = self.call(
            "POST",
            "/cgi-bin/externalcontact/get_user_behavior_data",
            json={"userid": [userid], "start_time": start_ts, "end_time": end_ts},
        )
        return list(answer.get("behavior_data") or [])
