"""Masking of personal information (PIPL): phones, emails and names, by role."""

from __future__ import annotations

from typing import Any

PHONE_KEYS = frozenset({"phone", "mobile", "phoneNumber", "purePhoneNumber", "remark_mobiles"})
EMAIL_KEYS = frozenset({"email"})
NAME_KEYS = frozenset({"name", "first_name", "last_name", "firstName", "lastName", "nickname"})


def mask_phone(value: str) -> str:
    """+8613812345678 -> +86138****5678: enough to recognise, not enough to call."""
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


def mask_identifier(id_type: str, value: str, *, reveal: bool) -> str:
    """An identifier value as the caller may see it."""
    if reveal:
        return value
    if id_type == "phone":
        return mask_phone(value)
    if id_type == "email":
        return mask_email(value)
    return value


def mask_payload(value: Any, *, reveal: bool, mask_names: bool) -> Any:
    """A copy of a JSON payload (traits, properties, context) with personal fields masked."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(v, str) and not reveal and k in PHONE_KEYS:
                out[k] = mask_phone(v)
            elif isinstance(v, str) and not reveal and k in EMAIL_KEYS:
                out[k] = mask_email(v)
            elif isinstance(v, str) and mask_names and k in NAME_KEYS:
                out[k] = mask_name(v)
            elif k == "externalIds" and isinstance(v, list):
                out[k] = [
                    {**item, "id": mask_identifier(str(item.get("type")), str(item["id"]), reveal=reveal)}
                    if isinstance(item, dict) and "id" in item
                    else item
                    for item in v
                ]
            else:
                out[k] = mask_payload(v, reveal=reveal, mask_names=mask_names)
        return out
    if isinstance(value, list):
        return [mask_payload(v, reveal=reveal, mask_names=mask_names) for v in value]
    return value
