"""Masking personal data in free text: refused bodies and error messages shown to people who may not see it."""

from __future__ import annotations

import pytest

from siyu.profiles.masking import mask_payload, mask_phone, mask_raw_payload, mask_record, mask_text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call 13812345678 now", "call 138****5678 now"),
        ("+8613812345678", "+86138****5678"),
        ("+86 138 1234 5678", "+86138****5678"),
        ("138-1234-5678", "138****5678"),
        ("nancy.w+vip@example.com.cn", "n***@example.com.cn"),
        # Not phones: too short, too long, a landline, a decimal, part of a longer number.
        ("order 1381234567", "order 1381234567"),
        ("total 138123456789", "total 138123456789"),
        ("021-55551234", "021-55551234"),
        ("3.13812345678", "3.13812345678"),
    ],
)
def test_phones_and_emails_in_text(text: str, masked: str) -> None:
    assert mask_text(text, reveal=False, mask_names=False) == masked


def test_keyed_fields_in_a_truncated_body() -> None:
    body = '{"traits": {"phone": "021-5555", "nickname": "小明", "name": "王\\"小明"'
    out = mask_text(body, reveal=False, mask_names=True)
    assert out == '{"traits": {"phone": "*******", "nickname": "小*", "name": "王****"'
    # Revealing shows phones and emails; a marketer's names stay masked even then.
    assert (
        mask_text(body, reveal=True, mask_names=True)
        == '{"traits": {"phone": "021-5555", "nickname": "小*", "name": "王****"'
    )
    assert mask_text(body, reveal=True, mask_names=False) == body


def test_raw_json_payload_masks_fields_and_phones_under_any_key() -> None:
    out = mask_raw_payload(
        '{"userId": "13812345678", "traits": {"phone": "13900000000", "name": "Nancy"}}',
        reveal=False,
        mask_names=False,
    )
    assert out == '{"userId": "138****5678", "traits": {"phone": "139****0000", "name": "Nancy"}}'


def test_mask_phone_ignores_separators() -> None:
    assert mask_phone("+86 139-0000-1234") == mask_phone("+8613900001234") == "+86139****1234"


def test_a_persons_name_under_any_person_key_is_masked_a_products_name_is_not() -> None:
    payload = {
        "recipient": "李雷",
        "invitee_name": "韩梅梅",
        "buyerName": "Nancy Wang",
        "contact": {"name": "王小明", "phone": "13812345678"},
        "products": [{"sku": "QP-1", "name": "苏绣旗袍"}],
        "store_name": "静安店",
    }
    out = mask_payload(payload, reveal=False, mask_names=True)
    assert out == {
        "recipient": "李*",
        "invitee_name": "韩**",
        "buyerName": "N*********",
        "contact": {"name": "王**", "phone": "138****5678"},
        "products": [{"sku": "QP-1", "name": "苏绣旗袍"}],
        "store_name": "静安店",
    }
    # A track call's own "name" is the product's (Segment's Product Viewed), not a person's.
    assert mask_payload({"name": "苏绣旗袍"}, reveal=False, mask_names=True, thing=True) == {
        "name": "苏绣旗袍"
    }


def test_an_address_in_a_body_that_is_not_json_is_masked_to_the_district() -> None:
    body = '{"properties": {"shipping_address": "上海市静安区南京西路1266号", "total": 1'
    assert mask_text(body, reveal=False, mask_names=False) == (
        '{"properties": {"shipping_address": "上海市静安区****", "total": 1'
    )


def test_a_phone_sent_as_a_json_number_is_masked_under_its_key_and_by_its_shape() -> None:
    record = {
        "mobile": 13987654321,
        "shipping": {"receiver_phone": 13955556666},
        "note_no": 13977778888,
        "qty": 2,
    }
    out = mask_record(record, reveal=False, mask_names=True)
    assert out == {
        "mobile": "139****4321",
        "shipping": {"receiver_phone": "139****6666"},
        "note_no": "139****8888",
        "qty": 2,
    }
    assert mask_record(record, reveal=True, mask_names=False) == record
