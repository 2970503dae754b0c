"""File imports: Tmall, JD and POS exports in CSV (UTF-8, GBK) and Excel, bad rows reported, re-runs no-ops."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from siyu.channels.imports import mappings
from siyu.channels.imports.models import FileImport
from siyu.channels.imports.service import RowConverter, RowError, csv_cell, run_import
from siyu.errors import BadRequest
from siyu.identity.models import Identifier
from siyu.ingest.models import Event
from siyu.profiles.models import Profile
from tests import factories

TMALL_HEADER = [
    "订单编号",
    "买家会员名",
    "收货人手机号",
    "买家实际支付金额",
    "退款金额",
    "订单付款时间",
    "订单状态",
]
TMALL_ROWS = [
    ["T1", "nancy_tb", "13812345678", "899.00", "0", "2026-11-01 10:00:00", "交易成功"],
    ["T2", "lizzy_tb", "138****5678", "1,299.00", "300.00", "2026/11/02 11:30", "交易成功"],
    ["T3", "x_tb", "", "59", "0", "2026-11-03 09:00:00", "交易关闭"],
    ["T4", "y_tb", "", "abc", "0", "2026-11-03 09:00:00", "交易成功"],
    ["T5", "", "", "100", "0", "2026-11-03 09:00:00", "交易成功"],
    ["T6", "z_tb", "12345", "100", "0", "2026-11-03 09:00:00", "交易成功"],
]


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def profile_of(session: Session, id_type: str, value: str) -> Profile:
    session.expire_all()
    return session.execute(
        select(Profile)
        .join(Identifier, Identifier.profile_id == Profile.id)
        .where(Identifier.type == id_type, Identifier.value == value)
    ).scalar_one()


def events(session: Session) -> int:
    return session.execute(select(func.count()).select_from(Event)).scalar_one()


def test_a_refused_value_that_looks_like_a_formula_stays_text_in_the_report(
    session: Session, tmp_path: Path
) -> None:
    """The report is opened in Excel: a cell =HYPERLINK(…) from a hostile export must not run there."""
    row = [
        "T9",
        "evil_tb",
        "",
        '=HYPERLINK("http://evil.example","x")',
        "0",
        "2026-11-01 10:00:00",
        "交易成功",
    ]
    path = write_csv(tmp_path / "tmall.csv", TMALL_HEADER, [row, TMALL_ROWS[0]])
    result = run_import(path, kind="orders", source="tmall", mapping=mappings.load("orders", "tmall"))
    assert (result.rows_imported, result.rows_failed) == (1, 1)
    assert result.error_report is not None
    with result.error_report.open(encoding="utf-8-sig") as f:
        report = list(csv.reader(f))
    assert report[1][2] == "'" + row[3]
    assert csv_cell("-5") == "-5" and csv_cell("@x") == "'@x" and csv_cell("王") == "王"


def test_tmall_gbk_export(session: Session, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "tmall.csv", TMALL_HEADER, TMALL_ROWS, encoding="gbk")
    result = run_import(path, kind="orders", source="tmall", mapping=mappings.load("orders", "tmall"))
    assert (result.rows_read, result.rows_imported, result.rows_skipped, result.rows_failed) == (6, 2, 1, 3)
    refused = {(f.row, f.column): f.reason for f in result.failures}
    assert refused[(5, "买家实际支付金额 (D)")] == "'abc' is not an amount"
    assert "names nobody" in refused[(6, "买家会员名 (B)")]
    assert refused[(7, "收货人手机号 (C)")] == "'12345' is not a valid phone number"
    assert result.error_report is not None
    with result.error_report.open(encoding="utf-8-sig") as f:
        report = list(csv.reader(f))
    assert report[0] == ["row", "column", "value", "reason"] and [r[0] for r in report[1:]] == ["5", "6", "7"]

    nancy = profile_of(session, "tmall_buyer_id", "nancy_tb")
    assert (nancy.orders_count, nancy.revenue_fen) == (1, 89900)
    assert profile_of(session, "phone", "+8613812345678").id == nancy.id
    lizzy = profile_of(session, "tmall_buyer_id", "lizzy_tb")
    assert (lizzy.orders_count, lizzy.revenue_fen, lizzy.refunded_fen) == (1, 129900, 30000)
    order = session.execute(select(Event).where(Event.message_id == "import:tmall:order:T1")).scalar_one()
    assert order.timestamp == dt.datetime(2026, 11, 1, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
    assert order.properties["channel"] == "tmall"

    stored = events(session)
    again = run_import(path, kind="orders", source="tmall", mapping=mappings.load("orders", "tmall"))
    assert (again.rows_imported, again.rows_duplicate, again.rows_failed) == (0, 2, 3)
    assert events(session) == stored
    records = session.execute(select(FileImport).order_by(FileImport.id)).scalars().all()
    assert [(r.status, r.rows_imported, r.rows_duplicate) for r in records] == [
        ("done", 2, 0),
        ("done", 0, 2),
    ]


def test_rows_with_an_unknown_status_or_an_impossible_time_are_refused_not_counted(
    session: Session, tmp_path: Path
) -> None:
    rows = [
        ["T1", "nancy_tb", "", "899.00", "0", "2026-11-01 10:00:00", "交易成功"],
        ["T2", "lizzy_tb", "", "100.00", "0", "2026-11-01 10:00:00", "退款成功"],
        ["T3", "x_tb", "", "59", "0", "0001-01-01 00:00:00", "交易成功"],
        ["T4", "y_tb", "", "59", "0", "2099-01-01 00:00:00", "交易成功"],
        ["T5", "z_tb", "", "59", "0", "1900-01-01", "交易成功"],
    ]
    path = write_csv(tmp_path / "tmall.csv", TMALL_HEADER, rows)
    result = run_import(path, kind="orders", source="tmall", mapping=mappings.load("orders", "tmall"))
    assert (result.rows_imported, result.rows_failed) == (1, 4)
    refused = {f.row: (f.column, f.reason) for f in result.failures}
    assert (
        refused[3][0] == "订单状态 (G)" and "'退款成功' is not in the mapping's status_map" in refused[3][1]
    )
    assert refused[4] == ("订单付款时间 (F)", "'0001-01-01 00:00:00' is before 2000-01-01: check the date")
    assert refused[5] == ("订单付款时间 (F)", "'2099-01-01 00:00:00' is in the future: check the date")
    assert refused[6][1].startswith("'1900-01-01' is before 2000-01-01")
    assert events(session) == 1


def test_pos_excel_with_refund_and_store(session: Session, tmp_path: Path) -> None:
    store = factories.store(session, code="SH01")
    factories.user(session, factories.Role.sales_associate, wecom_userid="zhangsan")
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(
        ["order_id", "member_card", "phone", "amount", "time", "store", "associate", "status", "skus"]
    )
    sheet.append(
        [
            "P1",
            880001,
            13900001111,
            1580.0,
            dt.datetime(2026, 11, 5, 15, 30),
            "SH01",
            "zhangsan",
            "paid",
            "QP-001,QP-002",
        ]
    )
    sheet.append(
        ["P2", 880001, None, 420.5, dt.datetime(2026, 11, 6, 12, 0), "SH01", "zhangsan", "refunded", "QP-003"]
    )
    path = tmp_path / "pos.xlsx"
    book.save(path)
    result = run_import(path, kind="orders", source="pos", mapping=mappings.load("orders", "pos"))
    assert (result.rows_imported, result.rows_failed) == (2, 0)
    customer = profile_of(session, "pos_card", "880001")
    assert (customer.orders_count, customer.revenue_fen, customer.refunded_fen) == (2, 200050, 42050)
    p1 = session.execute(select(Event).where(Event.message_id == "import:pos:order:P1")).scalar_one()
    assert p1.properties["store"] == "SH01" and p1.properties["associate"] == "zhangsan"
    assert p1.properties["products"] == [{"sku": "QP-001"}, {"sku": "QP-002"}]
    assert store.id  # the store exists: attribution by code


def test_killed_import_resumes_without_duplicates(session: Session, tmp_path: Path) -> None:
    rows = [[f"J{i}", f"buyer{i}", "", "10", "0", "2026-11-01 10:00:00", "完成"] for i in range(7)]
    header = ["订单号", "下单帐号", "联系电话", "应付金额", "退款金额", "下单时间", "订单状态"]
    path = write_csv(tmp_path / "jd.csv", header, rows)
    chunks: list[int] = []

    def die_after_two_chunks(n: int) -> None:
        chunks.append(n)
        if len(chunks) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_import(
            path,
            kind="orders",
            source="jd",
            mapping=mappings.load("orders", "jd"),
            chunk_rows=3,
            progress=die_after_two_chunks,
        )
    assert events(session) == 6
    killed = session.execute(select(FileImport)).scalar_one()
    assert (killed.status, killed.rows_imported) == ("failed", 6)
    resumed = run_import(
        path, kind="orders", source="jd", mapping=mappings.load("orders", "jd"), chunk_rows=3
    )
    assert (resumed.rows_imported, resumed.rows_duplicate) == (1, 6)
    assert events(session) == 7


def test_members(session: Session, tmp_path: Path) -> None:
    store = factories.store(session, code="BJ01")
    path = write_csv(
        tmp_path / "members.csv",
        ["member_id", "phone", "name", "tier", "store", "joined_at"],
        [
            ["M1001", "13812345678", "Nancy", "Gold", "bj01", "2025-03-01"],  # a POS writes codes lower-case
            ["M1002", "", "Lizzy", "", "", ""],
            ["M1003", "", "Jane", "", "SH99", ""],
        ],
    )
    result = run_import(path, kind="members", source="generic", mapping=mappings.load("members", "generic"))
    # A store code siyu does not know is refused with its row: the member would be visible to no store.
    assert (result.rows_imported, result.rows_failed) == (2, 1)
    (failure,) = result.failures
    assert (failure.row, failure.column) == (
        4,
        "store (E)",
    ) and "store 'SH99' does not exist" in failure.reason
    nancy = profile_of(session, "member_id", "M1001")
    assert nancy.name == "Nancy" and nancy.store_id == store.id and nancy.traits["tier"] == "Gold"
    assert nancy.traits["home_store"] == "BJ01"  # as the brand spells it
    from siyu.loyalty import service as loyalty

    member = loyalty.get_member_by_profile_or_raise(session, nancy.id)
    assert (member.join_channel, member.tier) == ("import:generic", "Gold")  # enrolled by the import
    assert (
        run_import(
            path, kind="members", source="generic", mapping=mappings.load("members", "generic")
        ).rows_duplicate
        == 2
    )
    factories.store(session, code="SH99")
    assert (
        run_import(path, kind="members", source="generic", mapping=mappings.load("members", "generic"))
    ).rows_imported == 1


def test_member_birthdays_genders_and_advisors_are_checked(session: Session, tmp_path: Path) -> None:
    factories.user(session, factories.Role.sales_associate, wecom_userid="zhangsan")
    path = write_csv(
        tmp_path / "members.csv",
        ["member_id", "birthday", "gender", "associate"],
        [
            ["M1", "1990/2/28", "女", "zhangsan"],
            ["M2", "03-08", "2", ""],
            ["M3", "1990-02-30", "female", ""],
            ["M4", "", "x", ""],
            ["M5", "", "", "lisi"],
        ],
    )
    result = run_import(path, kind="members", source="generic", mapping=mappings.load("members", "generic"))
    assert (result.rows_imported, result.rows_failed) == (2, 3)
    refused = {f.row: (f.column, f.reason) for f in result.failures}
    assert refused[4] == (
        "birthday (B)",
        "'1990-02-30' is not a date (e.g. 1990-02-28, or 02-28 without the year)",
    )
    assert refused[5][0] == "gender (C)" and "use male, female or unknown" in refused[5][1]
    assert (
        refused[6][0] == "associate (D)" and "'lisi' is the WeCom UserID of no active user" in refused[6][1]
    )
    m1 = profile_of(session, "member_id", "M1")
    assert (m1.traits["birthday"], m1.traits["gender"]) == ("1990-02-28", "female")
    assert m1.owner_user_id is not None
    assert profile_of(session, "member_id", "M2").traits["birthday"] == "03-08"


def test_a_changed_order_an_unknown_store_and_a_member_twice_are_reported(
    session: Session, tmp_path: Path
) -> None:
    factories.store(session, code="SH01")
    factories.user(session, factories.Role.sales_associate, wecom_userid="zhangsan")
    header = ["order_id", "member_card", "amount", "time", "store", "associate"]
    first = write_csv(
        tmp_path / "pos1.csv",
        header,
        [
            ["IO-1", "C1", "120.00", "2026-11-01 10:00", "SH01", "zhangsan"],
            ["IO-9", "C9", "9", "2026-11-01", "SH01", "ghost"],
        ],
    )
    ghost = run_import(first, kind="orders", source="pos", mapping=mappings.load("orders", "pos"))
    assert (ghost.rows_imported, ghost.rows_failed) == (1, 1)
    assert ghost.failures[0].column == "associate (F)"
    assert "'ghost' is the WeCom UserID or username of no user" in ghost.failures[0].reason
    later = write_csv(
        tmp_path / "pos2.csv",
        header,
        [
            ["IO-1", "C1", "150.00", "2026-11-01 10:00", "SH01", ""],
            ["IO-2", "C2", "80", "2026-11-02 10:00", "NOPE", ""],
        ],
    )
    result = run_import(later, kind="orders", source="pos", mapping=mappings.load("orders", "pos"))
    assert (result.rows_imported, result.rows_duplicate, result.rows_failed) == (0, 0, 2)
    refused = {f.row: (f.column, f.reason) for f in result.failures}
    assert refused[2] == (
        "amount (C)",
        "order 'IO-1' was imported before with 120.00: a changed amount is not applied "
        "(a refund is its own row or refund_amount)",
    )
    assert refused[3][0] == "store (E)" and "store 'NOPE' is the code or name of no store" in refused[3][1]
    assert profile_of(session, "pos_card", "C1").revenue_fen == 12000

    members = write_csv(
        tmp_path / "members.csv",
        ["member_id", "name"],
        [["MM1", "张三"], ["MM1", "张三"], ["MM1", "张三丰"]],
    )
    result = run_import(
        members, kind="members", source="generic", mapping=mappings.load("members", "generic")
    )
    assert (result.rows_imported, result.rows_duplicate, result.rows_failed) == (1, 1, 1)
    assert "member 'MM1' is also at row 2 of this file" in result.failures[0].reason
    assert profile_of(session, "member_id", "MM1").name == "张三"


def test_missing_columns_write_nothing(session: Session, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "wrong.csv", ["id", "who"], [["1", "x"]])
    with pytest.raises(BadRequest, match="has no column '订单编号', '买家实际支付金额', '订单付款时间'"):
        run_import(path, kind="orders", source="tmall", mapping=mappings.load("orders", "tmall"))
    assert session.execute(select(func.count()).select_from(FileImport)).scalar_one() == 0


def test_custom_mapping(session: Session, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "shop.csv",
        ["单号", "会员卡", "金额", "时间"],
        [["S1", "C9", "12.5", "2026-11-01T08:00:00+08:00"]],
    )
    custom = tmp_path / "mapping.json"
    custom.write_text(
        json.dumps(
            {
                "order_id": "单号",
                "identifiers": {"pos_card": "会员卡"},
                "amount": "金额",
                "time": "时间",
                "status": "",
            }
        )
    )
    result = run_import(path, kind="orders", source="pos", mapping=mappings.load("orders", "pos", custom))
    assert result.rows_imported == 1
    assert profile_of(session, "pos_card", "C9").revenue_fen == 1250
    custom.write_text(json.dumps({"order_key": "单号"}))
    with pytest.raises(BadRequest, match="unknown key 'order_key'"):
        mappings.load("orders", "pos", custom)
    custom.write_text(json.dumps({"status_map": {"ok": "done"}}))
    with pytest.raises(BadRequest, match="status_map"):
        mappings.load("orders", "pos", custom)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="does not exist"):
        run_import(tmp_path / "nope.csv", kind="orders", source="pos", mapping=mappings.load("orders", "pos"))
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BadRequest, match=r"not a readable \.xlsx"):
        run_import(bad, kind="orders", source="pos", mapping=mappings.load("orders", "pos"))
    pdf = tmp_path / "orders.pdf"
    pdf.write_bytes(b"%PDF")
    with pytest.raises(BadRequest, match=r"use a \.csv or \.xlsx"):
        run_import(pdf, kind="orders", source="pos", mapping=mappings.load("orders", "pos"))


def test_a_row_repeating_an_order_or_a_sku_is_a_duplicate_if_identical_and_refused_if_not(
    session: Session, tmp_path: Path
) -> None:
    from siyu.catalogue.models import Product

    rows = [
        ["T1", "nancy_tb", "", "899.00", "0", "2026-11-01 10:00:00", "交易成功"],
        ["T1", "nancy_tb", "", "899.00", "0", "2026-11-01 10:00:00", "交易成功"],  # the same row again
        [
            "T1",
            "nancy_tb",
            "",
            "999.00",
            "0",
            "2026-11-01 10:00:00",
            "交易成功",
        ],  # the same order, other total
        ["T2", "lizzy_tb", "", "oops", "0", "2026-11-01 10:00:00", "交易成功"],  # refused...
        [
            "T2",
            "lizzy_tb",
            "",
            "120.00",
            "0",
            "2026-11-01 10:00:00",
            "交易成功",
        ],  # ...so this one is the order
    ]
    path = write_csv(tmp_path / "tmall.csv", TMALL_HEADER, rows)
    result = run_import(
        path, kind="orders", source="tmall", mapping=mappings.load("orders", "tmall"), chunk_rows=2
    )
    assert (result.rows_imported, result.rows_duplicate, result.rows_failed) == (2, 1, 2)
    refused = {f.row: (f.column, f.reason) for f in result.failures}
    assert refused[4] == (
        "订单编号 (A)",
        "order 'T1' is also at row 2 of this file, with other values: row 2 is kept",
    )
    assert profile_of(session, "tmall_buyer_id", "nancy_tb").revenue_fen == 89900
    assert profile_of(session, "tmall_buyer_id", "lizzy_tb").revenue_fen == 12000

    header = ["商家编码", "宝贝标题", "类目", "价格"]
    catalogue = write_csv(
        tmp_path / "catalogue.csv",
        header,
        [
            ["QP-1", "旗袍", "旗袍", "100"],
            ["QP-1", "旗袍", "旗袍", "100"],
            ["QP-1", "旗袍 new", "旗袍", "200"],
        ],
    )
    products = run_import(
        catalogue, kind="products", source="tmall", mapping=mappings.load("products", "tmall")
    )
    assert (products.rows_imported, products.rows_duplicate, products.rows_failed) == (1, 1, 1)
    assert (
        products.failures[0].reason
        == "SKU 'QP-1' is also at row 2 of this file, with other values: row 2 is kept"
    )
    assert session.execute(select(Product.price_fen)).scalar_one() == 10000


def test_products(session: Session, tmp_path: Path) -> None:
    from siyu.catalogue.models import Product

    path = write_csv(
        tmp_path / "catalogue.csv",
        ["商家编码", "宝贝标题", "类目", "价格"],
        [
            ["QP-SU-018", "苏绣旗袍 Suzhou embroidered qipao", "旗袍", "2392.00"],
            ["QP-SU-019", "", "旗袍", "100"],
        ],
    )
    first = run_import(path, kind="products", source="tmall", mapping=mappings.load("products", "tmall"))
    assert (first.rows_imported, first.rows_failed) == (1, 1)
    assert first.failures[0].column == "宝贝标题 (B)" and first.failures[0].reason == "a name is required"
    product = session.execute(select(Product)).scalar_one()
    assert (product.sku, product.category, product.price_fen, product.source) == (
        "QP-SU-018",
        "旗袍",
        239200,
        "tmall",
    )
    assert (
        run_import(
            path, kind="products", source="tmall", mapping=mappings.load("products", "tmall")
        ).rows_duplicate
        == 1
    )
    write_csv(
        path,
        ["商家编码", "宝贝标题", "类目", "价格"],
        [["QP-SU-018", "苏绣旗袍 Suzhou embroidered qipao", "旗袍", "1999.00"]],
    )
    assert (
        run_import(
            path, kind="products", source="tmall", mapping=mappings.load("products", "tmall")
        ).rows_imported
        == 1
    )
    session.refresh(product)
    assert product.price_fen == 199900


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23 14:05:00", "2026-11-23T14:05:00+08:00"),
        ("2026/11/23 14:05:00", "2026-11-23T14:05:00+08:00"),
        ("2026-11-23 14:05", "2026-11-23T14:05:00+08:00"),
        ("2026/11/23 14:05", "2026-11-23T14:05:00+08:00"),
        ("2026-11-23", "2026-11-23T00:00:00+08:00"),
        ("2026/11/23", "2026-11-23T00:00:00+08:00"),
        ("2026-1-5 9:05:00", "2026-01-05T09:05:00+08:00"),  # strptime reads unpadded fields
        ("2026-11-23T06:05:00Z", "2026-11-23T06:05:00+00:00"),
        ("2026-11-23 14:05:00.250", "2026-11-23T14:05:00.250000+08:00"),
    ],
)
def test_order_times_in_every_accepted_form(text: str, expected: str) -> None:
    mapping = mappings.load("orders", "generic")
    header = [c for c in (mapping.order_id, mapping.amount, mapping.time, *mapping.identifiers.values()) if c]
    converter = RowConverter("orders", "generic", mapping, header, "orders.csv")
    assert converter._time(text, mapping.time) == expected


def test_an_order_time_that_is_no_time_is_refused_with_its_column() -> None:
    mapping = mappings.load("orders", "generic")
    header = [c for c in (mapping.order_id, mapping.amount, mapping.time, *mapping.identifiers.values()) if c]
    converter = RowConverter("orders", "generic", mapping, header, "orders.csv")
    with pytest.raises(RowError) as caught:
        converter._time("23.11.2026", mapping.time)
    assert caught.value.column == mapping.time and "not a time" in caught.value.reason


def test_a_large_import_gives_postgresql_statistics_of_what_it_imported(
    session: Session, tmp_path: Path
) -> None:
    # Into a new installation's empty tables: the planner, knowing nothing of them, read every event for
    # each chunk's reactors. analyze_every is the number of imported rows between two ANALYZEs.
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite is not analysed (its planner takes the indexes without statistics)
    path = write_csv(tmp_path / "tmall.csv", TMALL_HEADER, TMALL_ROWS, encoding="gbk")
    run_import(path, kind="orders", source="tmall", mapping=mappings.load("orders", "tmall"), analyze_every=1)
    estimated = session.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'events'")).scalar_one()
    assert estimated == events(session) > 0
