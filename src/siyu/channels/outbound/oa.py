"""Official Account API calls (api.weixin.qq.com/cgi-bin)."""

from __future__ import annotations

from typing import Any

from siyu.channels.outbound.base import ApiClient

# user/info `subscribe_scene` → the recruitment sources of the WeChat Luxury Index (domain.md §7).
SUBSCRIBE_SCENES = {
    "ADD_SCENE_SEARCH": "search",
    "ADD_SCENE_QR_CODE": "qr_code",
    "ADD_SCENE_PROFILE_CARD": "word_of_mouth",
    "ADD_SCENE_PROFILE_LINK": "word_of_mouth",
    "ADD_SCENE_PROFILE_ITEM": "word_of_mouth",
    "ADD_SCENE_PAID": "ad",
    "ADD_SCENE_WECHAT_ADVERTISEMENT": "ad",
    "ADD_SCENE_ACCOUNT_MIGRATION": "other",
    "ADD_SCENE_REPRINT": "word_of_mouth",
    "ADD_SCENE_LIVESTREAM": "other",
    "ADD_SCENE_CHANNELS": "other",
    "ADD_SCENE_OTHERS": "other",
}


class OaClient(ApiClient):
    """An Official Account's API."""

    def user_info(self, openid: str) -> dict[str, Any]:
        """cgi-bin/user/info: subscribe state, unionid (when the account is bound), subscribe_scene."""
        return self.call("GET", "/cgi-bin/user/info", params={"openid": openid, "lang": "zh_CN"})

    def create_qr(
        self, scene: str, *, expire_seconds: int | None = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """cgi-bin/qrcode/create with a string scene: permanent, or temporary for expire_seconds."""
        body: dict[str, Any] = {"action_info": {"scene": {"scene_str": scene}}}
        if expire_seconds is None:
            body["action_name"] = "QR_LIMIT_STR_SCENE"
        else:
            body.update(action_name="QR_STR_SCENE", expire_seconds=expire_seconds)
        return self.call("POST", "/cgi-bin/qrcode/create", json=body, idempotency_key=idempotency_key)

    def send_template(
        self,
        openid: str,
        template_id: str,
        data: dict[str, str],
        *,
        url: str | None = None,
        miniprogram: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """message/template/send; data values become {"value": …}. Answer carries WeChat's msgid."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {k: {"value": v} for k, v in data.items()},
        }
        if url:
            body["url"] = url
        if miniprogram:
            body["miniprogram"] = miniprogram
        return self.call("POST", "/cgi-bin/message/template/send", json=body, idempotency_key=idempotency_key)
