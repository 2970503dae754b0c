"""WeCom customer-contact API calls (qyapi.weixin.qq.com/cgi-bin/externalcontact)."""

from __future__ import annotations

from typing import Any

from siyu.channels.outbound.base import ApiClient


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
