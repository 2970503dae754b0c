"""Official Account API calls (api.weixin.qq.com/cgi-bin)."""

from __future__ import annotations

from typing import Any

from siyu.channels.outbound.base import ApiClient, WeChatError

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


USER_INFO_BATCH = 100  # WeChat's limit for user/info/batchget


class OaClient(ApiClient):
    """An Official Account's API."""

    def user_info(self, openid: str) -> dict[str, Any]:
        """cgi-bin/user/info: subscribe state, unionid (when the account is bound), subscribe_scene."""
        return self.call("GET", "/cgi-bin/user/info", params={"openid": openid, "lang": "zh_CN"})

    def user_info_batch(self, openids: list[str]) -> list[dict[str, Any]]:
        """cgi-bin/user/info/batchget: what user_info answers, for up to 100 followers in one call."""
        if not 0 < len(openids) <= USER_INFO_BATCH:
            raise ValueError(f"user/info/batchget takes 1 to {USER_INFO_BATCH} openids, not {len(openids)}")
        body = {"user_list": [{"openid": openid, "lang": "zh_CN"} for openid in openids]}
        answer = self.call("POST", "/cgi-bin/user/info/batchget", json=body)
        return list(answer.get("user_info_list") or [])

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

    def send_custom(self, openid: str, text: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """message/custom/send, a text customer-service message (only inside the 48-hour window)."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        return self.call("POST", "/cgi-bin/message/custom/send", json=body, idempotency_key=idempotency_key)

    def mass_send(
        self,
        *,
        client_msg_id: str,
        tag_id: int | None = None,
        openids: list[str] | None = None,
        text: str | None = None,
        media_id: str | None = None,
    ) -> dict[str, Any]:
        """A mass push to a user tag (sendall) or to 2 to 10,000 openids (send), text or an mpnews article.

        clientmsgid makes WeChat itself refuse a second job with the same id (45065, answered with
        the first job's msg_id): returned here as that job, so a retried push is never sent twice.
        """
        if (tag_id is None) == (openids is None):
            raise ValueError("give a tag_id or an openid list")
        if (text is None) == (media_id is None):
            raise ValueError("give text or an mpnews media_id")
        body: dict[str, Any] = {"clientmsgid": client_msg_id[:64]}
        if text is not None:
            body.update(msgtype="text", text={"content": text})
        else:
            body.update(msgtype="mpnews", mpnews={"media_id": media_id}, send_ignore_reprint=0)
        if tag_id is not None:
            body["filter"] = {"is_to_all": False, "tag_id": tag_id}
            path = "/cgi-bin/message/mass/sendall"
        else:
            assert openids is not None
            if not 2 <= len(openids) <= 10_000:
                raise ValueError("a mass send by openid takes 2 to 10,000 openids")
            body["touser"] = openids
            path = "/cgi-bin/message/mass/send"
        try:
            return self.call(
                "POST", path, json=body, idempotency_key=f"mass:{self.account.id}:{client_msg_id}"
            )
        except WeChatError as exc:
            if exc.errcode == 45065 and exc.detail.get("msg_id"):
                return exc.detail
            raise

    def create_tag(self, name: str) -> dict[str, Any]:
        """tags/create: a user tag (30 characters at most); answers {"tag": {"id", "name"}}."""
        return self.call("POST", "/cgi-bin/tags/create", json={"tag": {"name": name[:30]}})

    def list_tags(self) -> list[dict[str, Any]]:
        """tags/get: every user tag of the account ({"id", "name", "count"})."""
        return list(self.call("GET", "/cgi-bin/tags/get").get("tags") or [])

    def tag_users(self, tag_id: int, openids: list[str], *, untag: bool = False) -> None:
        """tags/members/batchtagging (or batchuntagging), 50 openids per call."""
        path = "/cgi-bin/tags/members/" + ("batchuntagging" if untag else "batchtagging")
        for i in range(0, len(openids), 50):
            self.call("POST", path, json={"openid_list": openids[i : i + 50], "tagid": tag_id})
