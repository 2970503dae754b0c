"""WeChat's signatures and AES envelopes against the published vectors (wechat-protocol.md §1)."""

from __future__ import annotations

import pytest

from siyu.channels.crypto import CryptoError, MessageCrypto, aes_key, signature, signature_matches

TOKEN = "123456"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
CORP_ID = "wx49f0ab532d5d035a"
REPLY = """<xml>
<MsgType><![CDATA[text]]></MsgType>
<Content><![CDATA[test]]></Content>
<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>
<ToUserName><![CDATA[messense]]></ToUserName>
<AgentID>1</AgentID>
<CreateTime>1411525903</CreateTime>
</xml>"""
INBOUND = (
    "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6"
    "ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqG"
    "p/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS"
    "709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0="
)


def test_url_signature_official_examples() -> None:
    assert signature("AAAAA", "1714036504", "1514711492") == "f464b24fc39322e44b38aa78f5edd27bd1441696"
    assert signature_matches("899cf89e464efb63f54ddac96b0a0a235f53aa78", "AAAAA", "1714037059", "486452656")
    assert not signature_matches(
        "899cf89e464efb63f54ddac96b0a0a235f53aa78", "AAAAA", "1714037059", "486452657"
    )


def test_wecom_echostr_vector() -> None:
    crypto = MessageCrypto(TOKEN, AES_KEY, CORP_ID)
    echostr = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
    assert crypto.open("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374425", echostr) == (
        "5927782489442352469"
    )
    with pytest.raises(CryptoError, match="msg_signature"):
        crypto.open("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374424", echostr)


def test_encrypt_vector() -> None:
    crypto = MessageCrypto(TOKEN, AES_KEY, CORP_ID)
    sealed = crypto.seal(REPLY, "1411525903", "461056294", random_prefix=b"1234567890123456")
    encrypted = (
        "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObves"
        "El5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrN"
        "rsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQ"
        "Jz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
    )
    assert f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>" in sealed
    assert "<MsgSignature><![CDATA[407518b7649e86ef23978113f92d27afa9296533]]></MsgSignature>" in sealed


def test_decrypt_vector() -> None:
    crypto = MessageCrypto(TOKEN, AES_KEY, CORP_ID)
    text = crypto.open("74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "1411525903", "461056294", INBOUND)
    assert "<Content><![CDATA[test]]></Content>" in text
    assert "<FromUserName><![CDATA[messense]]></FromUserName>" in text


def test_round_trip_with_unicode() -> None:
    crypto = MessageCrypto("tok", AES_KEY, "wxapp")
    assert crypto.decrypt(crypto.encrypt("旗袍 qipao " * 50)) == "旗袍 qipao " * 50


def test_envelope_for_another_account_is_refused() -> None:
    other = MessageCrypto(TOKEN, AES_KEY, "wx-someone-else")
    with pytest.raises(CryptoError, match="made for 'wx-someone-else'"):
        MessageCrypto(TOKEN, AES_KEY, CORP_ID).decrypt(other.encrypt("hello"))


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [("not base64!", "not base64"), ("YWJj", "AES blocks"), ("A" * 64, "padding|length|made for")],
)
def test_corrupt_envelopes(envelope: str, reason: str) -> None:
    with pytest.raises(CryptoError, match=reason):
        MessageCrypto(TOKEN, AES_KEY, CORP_ID).decrypt(envelope)


def test_aes_key_must_be_43_base64_characters() -> None:
    assert len(aes_key(AES_KEY)) == 32
    with pytest.raises(CryptoError, match="43 characters"):
        aes_key("short")
    with pytest.raises(CryptoError, match="base64"):
        aes_key("!" * 43)
