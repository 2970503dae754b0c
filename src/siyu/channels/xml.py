"""WeChat's XML bodies: parsed without entity expansion, built with CDATA."""

from __future__ import annotations

from typing import Any
from xml.parsers import expat

MAX_BODY_BYTES = 64 * 1024  # WeChat's pushes are a few hundred bytes; anything far bigger is not WeChat.


class XmlError(ValueError):
    """The body is not a WeChat XML message; the text says what is wrong."""


class _Refused(Exception):
    """A DTD or an entity declaration: what XML bombs and external entities need."""


def _refuse(*_: object) -> None:
    raise _Refused


def _refuse_reference(*_: object) -> int:
    raise _Refused


def _add(parent: dict[str, Any], tag: str, value: Any) -> None:
    if tag in parent:
        # Repeated elements (an article list, several result items) become a list.
        previous = parent[tag]
        parent[tag] = [*previous, value] if isinstance(previous, list) else [previous, value]
    else:
        parent[tag] = value


def parse(body: bytes | str) -> dict[str, Any]:
    """The children of the root <xml> element as a dict; XmlError when the body is not that.

    Read with expat directly (a push is parsed twice on the callback's hot path; ElementTree's tree
    and defusedxml's wrapper cost more than the rest of the parse). No DTD is accepted, so no entity
    can be declared, expanded or fetched: what defusedxml's forbid_dtd refuses.
    """
    if len(body) > MAX_BODY_BYTES:
        raise XmlError(f"body is {len(body)} bytes, over {MAX_BODY_BYTES // 1024} KB")
    if not body.strip():
        raise XmlError("empty body")
    # Each open element: its tag, its children (once it has some) and its text.
    stack: list[tuple[str, dict[str, Any], list[str]]] = []
    result: dict[str, Any] = {}

    def start(tag: str, _attrs: object) -> None:
        if not stack and tag != "xml":
            raise XmlError(f"root element must be <xml>, got <{tag}>")
        stack.append((tag, {}, []))

    def end(_tag: str) -> None:
        tag, children, text = stack.pop()
        value: Any = children if children else "".join(text).strip()
        if stack:
            _add(stack[-1][1], tag, value)
        elif isinstance(value, dict):
            result.update(value)

    def text(data: str) -> None:
        stack[-1][2].append(data)

    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse_reference
    try:
        parser.Parse(body, True)
    except XmlError:  # raised by a handler, already saying what is wrong
        raise
    except _Refused:
        raise XmlError("refused XML construct: a DTD or an entity declaration") from None
    except expat.ExpatError as exc:
        raise XmlError(f"malformed XML: {exc}") from exc
    except (LookupError, ValueError) as exc:  # an encoding the declaration names but Python cannot read
        raise XmlError(f"unreadable XML: {exc}") from exc
    return result


def cdata(text: str) -> str:
    """text as CDATA, splitting any ']]>' inside it."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build(fields: dict[str, str | int]) -> str:
    """A flat <xml> message: strings as CDATA, integers bare (as WeChat writes CreateTime)."""
    parts = [f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}>{cdata(v)}</{k}>" for k, v in fields.items()]
    return "<xml>" + "".join(parts) + "</xml>"
