"""Masking of personal information (PIPL): phones, emails and names, by role."""

from __future__ import annotations

import json
import re
from typing import Any

PHONE_KEYS = frozenset(
    {
        "phone",
        "mobile",
        "phoneNumber",
        "purePhoneNumber",
        "remark_mobiles",
        "telNumber",  # wx.chooseAddress
        "shipping_phone",
        "receiver_phone",
        "contact_phone",
        "telephone",
        "tel",
    }
)
EMAIL_KEYS = frozenset({"email"})
NAME_KEYS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "firstName",
        "lastName",
        "nickname",
        "userName",  # wx.chooseAddress
        "shipping_name",
        "receiver_name",
        "recipient_name",
        "consignee",
        "contact_name",
        "real_name",
        "nickName",  # wx.getUserInfo
        "recipient",
        "receiver",
        "invitee",
        "inviter",
        "contact",
        "full_name",
    }
)
# A person's name under a key of its own: receiver_name, buyerName, inviteeName, wechat_nickname, …
_PERSON_NAME = (
    r"(?:receiver|recipient|buyer|customer|member|contact|invitee|inviter|referrer|friend|sender|consignee"
    r"|shipping|billing|real|full|nick|user|first|last|given|family|wechat|wx)_?(?:nick)?name"
)
_PERSON_NAME_KEY = re.compile(_PERSON_NAME, re.IGNORECASE)
# Containers whose "name" is a thing's: a product, a page, the app, a campaign (Segment's spec).
THING_KEYS = frozenset(
    {
        "products",
        "product",
        "items",
        "app",
        "device",
        "library",
        "os",
        "campaign",
        "page",
        "screen",
        "promotion",
        "network",
        "store",
        "coupon",
        "groupTraits",
    }
)
# Street-level addresses (a city alone is not personal data; where she lives is).
ADDRESS_KEYS = frozenset(
    {"address", "street", "shipping_address", "billing_address", "receiver_address", "detailInfo"}
)


def is_phone_key(key: str) -> bool:
    """Whether a field of this name holds a phone number (also shipping_phone, mobilePhone, …)."""
    return key in PHONE_KEYS or key.lower().endswith(("phone", "mobile"))


def is_name_key(key: str) -> bool:
    """Whether a field of this name holds a person's name (also receiver_name, inviteeName, …)."""
    return key in NAME_KEYS or _PERSON_NAME_KEY.fullmatch(key) is not None


# A mainland mobile number anywhere in free text, with or without +86 / 86 and separators.
PHONE_IN_TEXT = re.compile(r"(?<![\w.])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d){8}(?!\w)")
EMAIL_IN_TEXT = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# "key": "value" pairs of personal fields in text that is not valid JSON (a truncated body).
_KEYED = r'"({keys})"\s*:\s*"((?:[^"\\]|\\.)*)"'
PHONE_PAIR = re.compile(_KEYED.format(keys="|".join(sorted(PHONE_KEYS))))
NAME_PAIR = re.compile(_KEYED.format(keys="|".join([*sorted(NAME_KEYS), _PERSON_NAME])), re.IGNORECASE)
ADDRESS_PAIR = re.compile(_KEYED.format(keys="|".join(sorted(ADDRESS_KEYS))))


def _is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def mask_phone(value: str) -> str:
    """+8613812345678 -> +86138****5678: enough to recognise, not enough to call."""
    value = re.sub(r"[\s-]", "", value)  # "+86 138 1234 5678" would otherwise keep a digit too many
    if len(value) <= 7:
        return "*" * len(value)
    return value[: len(value) - 8] + "****" + value[-4:]


def mask_email(value: str) -> str:
    """nancy@example.com -> n***@example.com."""
    local, at, domain = value.partition("@")
    return (local[:1] + "***" + at + domain) if at else "***"


def mask_name(value: str) -> str:
    """王小明 -> 王**: the family name stays, the rest is hidden."""
    return value[:1] + "*" * max(len(value) - 1, 1) if value else value


def mask_address(value: str) -> str:
    """上海市静安区南京西路1266号 -> 上海市静安区****: the district stays, the street is hidden."""
    return value[:6] + "****" if len(value) > 6 else "****"


def mask_identifier(id_type: str, value: str, *, reveal: bool) -> str:
    """An identifier value as the caller may see it."""
    if reveal or value.startswith("erased:"):  # an erased identifier's tombstone holds nothing personal
        return value
    if id_type == "phone":
        return mask_phone(value)
    if id_type == "email":
        return mask_email(value)
    # A member id or a card number can be a phone number: masked by its shape.
    return mask_text(value, reveal=False, mask_names=False)


def mask_payload(value: Any, *, reveal: bool, mask_names: bool, thing: bool = False) -> Any:
    """A copy of a JSON payload (traits, properties, context) with personal fields masked.

    thing: value describes a thing (a product, a page), so its bare "name" is not a person's.
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if _is_whole_number(v) and not reveal and is_phone_key(k):
                out[k] = mask_phone(str(v))  # a phone sent as a JSON number is still a phone
            elif isinstance(v, str) and not reveal and is_phone_key(k):
                out[k] = mask_phone(v)
            elif isinstance(v, str) and not reveal and k in EMAIL_KEYS:
                out[k] = mask_email(v)
            elif isinstance(v, str) and not reveal and k in ADDRESS_KEYS:
                out[k] = mask_address(v)
            elif isinstance(v, str) and mask_names and is_name_key(k) and not (thing and k == "name"):
                out[k] = mask_name(v)
            elif k == "externalIds" and isinstance(v, list):
                out[k] = [
                    {**item, "id": mask_identifier(str(item.get("type")), str(item["id"]), reveal=reveal)}
                    if isinstance(item, dict) and "id" in item
                    else item
                    for item in v
                ]
            else:
                out[k] = mask_payload(v, reveal=reveal, mask_names=mask_names, thing=k in THING_KEYS)
        return out
    if isinstance(value, list):
        return [mask_payload(v, reveal=reveal, mask_names=mask_names, thing=thing) for v in value]
    return value


def mask_text(text: str, *, reveal: bool, mask_names: bool) -> str:
    """Free text (a refused body, an error message) with phones, emails and, if asked, named fields masked."""
    if mask_names:
        text = NAME_PAIR.sub(lambda m: f'"{m[1]}": "{mask_name(m[2])}"', text)
    if reveal:
        return text
    text = PHONE_PAIR.sub(lambda m: f'"{m[1]}": "{mask_phone(m[2])}"', text)
    text = ADDRESS_PAIR.sub(lambda m: f'"{m[1]}": "{mask_address(m[2])}"', text)
    text = PHONE_IN_TEXT.sub(lambda m: mask_phone(m[0]), text)
    return EMAIL_IN_TEXT.sub(lambda m: mask_email(m[0]), text)


def mask_raw_payload(payload: str, *, reveal: bool, mask_names: bool, indent: int | None = None) -> str:
    """A stored raw body as the caller may see it: JSON masked field by field, then any phone or email left."""
    try:
        parsed = json.loads(payload)
    except ValueError:
        return mask_text(payload, reveal=reveal, mask_names=mask_names)
    masked = mask_payload(parsed, reveal=reveal, mask_names=mask_names)
    text = json.dumps(masked, ensure_ascii=False, indent=indent)
    # Field names are not the only place people put phones: a userId, a property, a note.
    return mask_text(text, reveal=reveal, mask_names=False)


def mask_content(value: Any, *, mask_names: bool, names: tuple[str, ...] = (), reveal: bool = False) -> Any:
    """A copy of rendered or free content (a message, a task title, a note) with personal data masked.

    Free text is searched by shape, not by key: any phone or email (unless reveal); with mask_names, the
    customer's own `names` (her full and first name) wherever they appear.
    """
    if isinstance(value, dict):
        return {
            k: mask_content(v, mask_names=mask_names, names=names, reveal=reveal) for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_content(v, mask_names=mask_names, names=names, reveal=reveal) for v in value]
    if _is_whole_number(value) and not reveal and PHONE_IN_TEXT.fullmatch(str(value)):
        return mask_phone(str(value))  # 13812345678 as a number, under a key we cannot know
    if not isinstance(value, str):
        return value
    text = value if reveal else mask_text(value, reveal=False, mask_names=False)
    if mask_names:
        # The longest first: "Nancy Wang" before "Nancy", so the full name is not left half-masked.
        for name in sorted({n for n in names if n and len(n) > 1}, key=len, reverse=True):
            text = text.replace(name, mask_name(name))
    return text


def mask_record(
    value: Any, *, reveal: bool, mask_names: bool, names: tuple[str, ...] = (), thing: bool = False
) -> Any:
    """A stored JSON record (traits, an event's properties) masked by key, then by shape in free text."""
    masked = mask_payload(value, reveal=reveal, mask_names=mask_names, thing=thing)
    if reveal and not mask_names:
        return masked
    return mask_content(masked, mask_names=mask_names, names=names, reveal=reveal)
