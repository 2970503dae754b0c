"""WeChat's XML bodies: parsed without entity expansion, built with CDATA."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_BODY_BYTES = 64 * 1024  # WeChat's pushes are a few hundred bytes; anything far bigger is not WeChat.


class XmlError(ValueError):
    """The body is not a WeChat XML message; the text says what is wrong."""


def _value(node: Element) -> Any:
    children = list(node)
    if not children:
        return (node.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        value = _value(child)
        if child.tag in out:
            # Repeated elements (an article list, several result items) become a list.
            previous = out[child.tag]
            out[child.tag] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[child.tag] = value
    return out


def parse(body: bytes | str) -> dict[str, Any]:
    """The children of the root <xml> element as a dict; XmlError when the body is not that."""
    if len(body) > MAX_BODY_BYTES:
        raise XmlError(f"body is {len(body)} bytes, over {MAX_BODY_BYTES // 1024} KB")
    if not body.strip():
        raise XmlError("empty body")
    try:
        root = fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise XmlError(f"refused XML construct: {type(exc).__name__}") from exc
    except ParseError as exc:
        raise XmlError(f"malformed XML: {exc}") from exc
    if root.tag != "xml":
        raise XmlError(f"root element must be <xml>, got <{root.tag}>")
    value = _value(root)
    return value if isinstance(value, dict) else {}


def cdata(text: str) -> str:
    """text as CDATA, splitting any ']]>' inside it."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build(fields: dict[str, str | int]) -> str:
    """A flat <xml> message: strings as CDATA, integers bare (as WeChat writes CreateTime)."""
    parts = [f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}>{cdata(v)}</{k}>" for k, v in fields.items()]
    return "<xml>" + "".join(parts) + "</xml>"
