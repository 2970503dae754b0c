"""WeChat XML bodies: parsed safely, with errors that say what is wrong."""

from __future__ import annotations

import pytest

from siyu.channels import xml

TEXT = (
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName>"
    "<CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[this is a test]]></Content><MsgId>1234567890123456</MsgId></xml>"
)


def test_flat_message() -> None:
    assert xml.parse(TEXT) == {
        "ToUserName": "toUser",
        "FromUserName": "fromUser",
        "CreateTime": "1348831860",
        "MsgType": "text",
        "Content": "this is a test",
        "MsgId": "1234567890123456",
    }


def test_text_with_escapes_cdata_and_whitespace() -> None:
    body = "<xml>\n  <A> a &amp; b &lt;c&gt; </A>\n  <B><![CDATA[ <raw> & ]]></B>\n  <C/><D>中文</D>\n</xml>"
    assert xml.parse(body) == {"A": "a & b <c>", "B": "<raw> &", "C": "", "D": "中文"}
    assert xml.parse(body.encode()) == xml.parse(body)


def test_nested_and_repeated_elements() -> None:
    body = "<xml><A><B>1</B><B>2</B></A><C>x</C></xml>"
    assert xml.parse(body) == {"A": {"B": ["1", "2"]}, "C": "x"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "empty body"),
        ("<xml><a></xml>", "malformed XML"),
        ("<root><a>1</a></root>", "^root element must be <xml>"),
        ('<!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><a>&a;</a></xml>', "refused XML construct"),
        (
            '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            "<xml><a>&b;&b;&b;&b;</a></xml>",
            "refused XML construct",
        ),
        (
            '<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><a>&e;</a></xml>',
            "refused XML construct",
        ),
        ('<!DOCTYPE xml SYSTEM "http://127.0.0.1:1/x.dtd"><xml><a>1</a></xml>', "refused XML construct"),
        ("<xml><a>&undefined;</a></xml>", "malformed XML: undefined entity"),
        ("<xml><a>1</a></xml><xml/>", "malformed XML: junk after document element"),
        ("<xml>" + "x" * 70_000 + "</xml>", "over 64 KB"),
    ],
)
def test_bad_bodies(body: str, reason: str) -> None:
    with pytest.raises(xml.XmlError, match=reason):
        xml.parse(body)


def test_build_escapes_cdata() -> None:
    built = xml.build({"ToUserName": "o1", "CreateTime": 5, "Content": "a]]>b"})
    assert (
        built
        == "<xml><ToUserName><![CDATA[o1]]></ToUserName><CreateTime>5</CreateTime><Content><![CDATA[a]]]]><![CDATA[>b]]></Content></xml>"
    )
    assert xml.parse(built)["Content"] == "a]]>b"
