"""View models: the merge history told from the profile shown, chart labels, dead-letter payloads."""

from __future__ import annotations

import datetime as dt

from siyu.auth.models import Role
from siyu.auth.principal import Principal
from siyu.console.views import chart_series, dead_letter_rows, merge_rows, trait_items
from siyu.ingest.models import DeadLetter
from siyu.profiles.schemas import MergeOut

AT = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def merge(kind: str, profile_id: int, other: int) -> MergeOut:
    return MergeOut(
        id=1,
        kind=kind,
        profile_id=profile_id,
        other_profile_id=other,
        rule="same_event",
        message_id=None,
        identifier_id=None,
        actor="system",
        created_at=AT,
        detail={},
    )


def test_merge_rows_name_the_other_profile() -> None:
    rows = merge_rows(
        1, [merge("merge", 1, 2), merge("merge", 2, 3), merge("unmerge", 1, 4), merge("unmerge", 5, 1)]
    )
    assert [(r.summary, r.other_id) for r in rows] == [
        ("Merged profile #2 into this profile", 2),
        ("#2 absorbed #3 before joining this profile", 3),
        ("Split profile #4 off this profile", 4),
        ("Split off from profile #5", 5),
    ]


def test_chart_labels_are_in_china_standard_time() -> None:
    assert chart_series([("23:59", 3), ("00:00", 0)]) == {"labels": ["07:59", "08:00"], "counts": [3, 0]}


def test_dead_letter_payloads_are_masked_and_previewed() -> None:
    letter = DeadLetter(
        id=1,
        received_at=AT,
        batch_index=2,
        message_id="m",
        reason="bad",
        payload='{"traits": {"phone": "13812345678", "name": "王小明"}}',
    )
    marketer = Principal(kind="user", id=1, name="m", role=Role.marketer)
    (row,) = dead_letter_rows(marketer, [letter])
    assert "13812345678" not in row.payload and "+86" not in row.payload
    assert "138****5678" in row.payload and "王**" in row.payload
    assert not row.truncated
    garbage = DeadLetter(
        id=2, received_at=AT, batch_index=0, message_id=None, reason="json", payload="{" * 500
    )
    (row,) = dead_letter_rows(marketer, [garbage])
    assert row.truncated and len(row.preview) == 120 and row.payload == "{" * 500


def test_trait_items_sorted_and_structured_values_as_json() -> None:
    assert trait_items({"b": {"x": 1}, "a": "值"}) == [("a", "值"), ("b", '{"x": 1}')]


def test_unparsable_dead_letters_are_masked_too() -> None:
    # A truncated body is not JSON: the console still must not show the phone, email or name in it.
    body = '{"batch": [{"userId": "13812345678", "traits": {"email": "nancy@example.com", "name": "王小明"'
    letter = DeadLetter(
        id=3, received_at=AT, batch_index=0, message_id=None, reason="malformed JSON", payload=body
    )
    marketer = Principal(kind="user", id=1, name="m", role=Role.marketer)
    (row,) = dead_letter_rows(marketer, [letter])
    for secret in ("13812345678", "nancy@", "小明"):
        assert secret not in row.payload and secret not in row.preview
    assert "138****5678" in row.payload and "n***@example.com" in row.payload and "王**" in row.payload
