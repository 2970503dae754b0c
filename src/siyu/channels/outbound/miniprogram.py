"""Mini Program API calls (api.weixin.qq.com: sns/jscode2session, wxa/business, subscribe messages)."""

from __future__ import annotations

from typing import Any

from siyu.channels import service
from siyu.channels.outbound.base import ApiClient


class MiniProgramClient(ApiClient):
    """A Mini Program's API."""

    def code2session(self, js_code: str) -> dict[str, Any]:
        """sns/jscode2session: openid, session_key and (when bound) unionid of a wx.login() code."""
        creds = service.credentials(self.account)
        return self.call(
            "GET",
            "/sns/jscode2session",
            params={
                "appid": creds.app_id,
                "secret": creds.secret,
                "js_code": js_code,
                "grant_type": "authorization_code",
            },
            auth="",
        )

    def phone_number(self, code: str) -> dict[str, Any]:
        """wxa/business/getuserphonenumber: the phone_info of a getPhoneNumber code (single use, 5 min)."""
        return self.call("POST", "/wxa/business/getuserphonenumber", json={"code": code})

    def send_subscribe(
        self,
        openid: str,
        template_id: str,
        data: dict[str, str],
        *,
        page: str | None = None,
        state: str = "formal",
        lang: str = "zh_CN",
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """message/subscribe/send, with miniprogram_state and lang (which wechatpy drops)."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {k: {"value": v} for k, v in data.items()},
            "miniprogram_state": state,
            "lang": lang,
        }
        if page:
            body["page"] = page
        return self.call(
            "POST", "/cgi-bin/message/subscribe/send", json=body, idempotency_key=idempotency_key
        )
