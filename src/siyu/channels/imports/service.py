"""Run a file import: rows become Segment-spec events and go through the ingest pipeline in chunks.

Each chunk of rows is one transaction (the events, their identity resolution and the import's
counters), so an import killed half-way keeps the chunks it finished. Every event's messageId is
derived from the order id (or the member row's content), so running the same file again, or
resuming a killed import, stores nothing twice. A bad row is reported with its row number, column
and reason in an error report and does not stop the others.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import select, text

from siyu import bulk
from siyu.auth.models import User
from siyu.catalogue.service import upsert_products
from siyu.channels.imports import readers
from siyu.channels.imports.mappings import Mapping
from siyu.channels.imports.models import FileImport, ImportStatus
from siyu.clienteling.models import Store
from siyu.config import Settings, get_settings
from siyu.db import is_postgres, unit_of_work, utcnow
from siyu.errors import BadRequest
from siyu.ingest.models import Event
from siyu.ingest.normalize import EARLIEST, MAX_AMOUNT, MAX_FUTURE
from siyu.ingest.service import ingest_batch

# A first import fills a new installation's empty tables, faster than autovacuum analyses them: the planner,
# with no statistics (or those of a table a tenth the size), read all the events for every chunk's reactors:
# 40,000 rows took 25 s, growing, at 270,000 events, and 20 s after an ANALYZE. So, as after any bulk load,
# the import analyses them as it goes (0.6 s at 270,000 events).
ANALYZE_EVERY = 100_000
GROWN_TABLES = ("events", "identifiers", "profiles")

TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
)


def _iso(text: str) -> dt.datetime | None:
    """text as an ISO 8601 time, None if it is not one.

    Tried before TIME_FORMATS when the mapping names no format: most exports write 2026-11-23 14:05:00,
    which fromisoformat reads as strptime does, in a tenth of the time (strptime was a tenth of an import).
    """
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def _strptime(text: str, formats: Iterable[str]) -> dt.datetime | None:
    """text read by the first of formats that fits it, None if none does."""
    for fmt in formats:
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


_EXTERNAL_ID = re.compile(r"context\.externalIds\[(\d+)\]")
_EXTERNAL_ID_FIELD = re.compile(r"^context\.externalIds\[\d+\]\.id: |^userId: ")


class RowError(ValueError):
    """A row that cannot be imported: which column and why."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


class Skip(Exception):
    """A row that is not an order to import (cancelled, unpaid): counted, not refused."""


class Repeat(Exception):
    """A row that repeats an earlier row of the same file exactly: counted as a duplicate."""


# A spreadsheet runs a cell that starts like a formula (=HYPERLINK(…), +, -, @): a refused value opened in
# Excel must stay text. The leading apostrophe is Excel's own "this is text" mark.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """value safe to open in a spreadsheet: text that starts like a formula gets a leading apostrophe."""
    return "'" + value if value.startswith(_FORMULA_START) and not _is_number(value) else value


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class RowEvents:
    """The events of one row, and which column each externalIds entry came from."""

    number: int
    events: list[dict[str, Any]]
    id_columns: list[str]
    key: str | None = None  # the order id: remembered once the row is imported (RowConverter.seen)


@dataclass(slots=True)
class Failure:
    row: int
    column: str
    value: str
    reason: str


@dataclass(slots=True)
class ImportResult:
    """What an import did; rows_* count rows (a refunded order is one row and two events)."""

    import_id: int
    rows_read: int = 0
    rows_imported: int = 0
    rows_duplicate: int = 0
    rows_skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    error_report: Path | None = None

    @property
    def rows_failed(self) -> int:
        return len(self.failures)


class RowConverter:
    """Turns the rows of one file into events, by its mapping."""

    def __init__(self, kind: str, source: str, mapping: Mapping, header: list[str], filename: str) -> None:
        self.kind, self.source, self.mapping, self.filename = kind, source, mapping, filename
        # The brand's store codes, when the import checks a member's home store against them.
        # Upper-case code or name -> the code as the brand spells it.
        self.stores: dict[str, str] | None = None
        # The WeCom UserIDs of active staff, when the import checks a member's advisor against them.
        self.advisors: frozenset[str] | None = None
        self.index = {name: i for i, name in enumerate(header) if name}
        self.header = header
        self.zone = ZoneInfo(mapping.timezone)
        missing = [c for c in self.required() if c not in self.index]
        if missing:
            raise BadRequest(
                f"file: {filename} has no column {', '.join(repr(c) for c in missing)} "
                f"(columns: {', '.join(h for h in header if h)}); adjust the mapping with --mapping"
            )
        # The first row of each order id or SKU in this file and a digest of its cells: a later row with the
        # same key is an exact repeat (a duplicate) or a conflict, reported instead of silently kept or lost.
        self.seen: dict[str, tuple[int, int]] = {}
        self.id_columns = {t: c for t, c in mapping.identifiers.items() if c in self.index}
        if not self.id_columns and kind != "products":
            wanted = ", ".join(f"{c!r} ({t})" for t, c in mapping.identifiers.items())
            raise BadRequest(f"file: {filename} has none of the identifier columns {wanted}")

    def required(self) -> list[str]:
        m = self.mapping
        if self.kind == "products":
            return [c for c in (m.sku, m.name) if c]
        return [c for c in (m.order_id, m.amount, m.time) if c] if self.kind == "orders" else []

    def _known_store(self, value: str, column: str, unknown: str) -> str:
        """The brand's code of the store named value (its code in any case, or its name): sh01 is stored as
        SH01. RowError at column (`store 'X' <unknown>`) for no store; value itself when stores are not checked.
        """
        if self.stores is None:
            return value
        code = self.stores.get(value.strip().upper())
        if code is None:
            raise RowError(
                column,
                f"store {value!r} {unknown}: add it (siyu org add-store or import-stores) and import again",
            )
        return code

    def _check_associate(self, value: str, column: str, unknown: str, add: str) -> None:
        """RowError at column when value names none of the staff the import checks against (self.advisors)."""
        if self.advisors is not None and value not in self.advisors:
            raise RowError(column, f"associate {value!r} is {unknown}: add them ({add}) and import again")

    def first_of(self, what: str, key: str, values: list[Any], column: str) -> int:
        """The row's digest if no row imported before has key; Repeat for an exact repeat; RowError otherwise.

        The caller remembers (self.seen) the rows it imports: a refused row keeps nothing from a later one.
        """
        digest = hash(tuple(readers.cell_text(v) for v in values))
        earlier = self.seen.get(key)
        if earlier is None:
            return digest
        first, first_digest = earlier
        if first_digest == digest:
            raise Repeat(key)
        raise RowError(
            column,
            f"{what} {key!r} is also at row {first} of this file, with other values: row {first} is kept",
        )

    def product(self, number: int, values: list[Any]) -> dict[str, Any]:
        """The catalogue row of a products row; RowError otherwise."""
        m = self.mapping
        sku = self.get(values, m.sku)
        if not sku:
            raise RowError(m.sku, "a SKU is required")
        if len(sku) > 100:
            raise RowError(m.sku, "a SKU is at most 100 characters")
        digest = self.first_of("SKU", sku, values, m.sku)
        name = self.get(values, m.name)
        if not name:
            raise RowError(m.name, "a name is required")
        price = self._amount(self.get(values, m.price), m.price, required=False) or Decimal(0)
        attributes = {k: v for k, c in m.traits.items() if (v := self.get(values, c))}
        self.seen[sku] = (number, digest)
        return {
            "sku": sku,
            "name": name[:255],
            "category": self.get(values, m.category)[:120],
            "price_fen": int((price * 100).to_integral_value()),
            "attributes": attributes,
        }

    def label(self, column: str) -> str:
        """A column as the error report names it: header and letter."""
        i = self.index.get(column)
        return f"{column} ({readers.column_letter(i)})" if i is not None else column

    def get(self, values: list[Any], column: str) -> str:
        i = self.index.get(column) if column else None
        if i is None or i >= len(values):
            return ""
        return readers.cell_text(values[i])

    def _time(self, text: str, column: str) -> str:
        if not text:
            raise RowError(column, "a time is required")
        if self.mapping.time_format:
            parsed = _strptime(text, (self.mapping.time_format,)) or _iso(text)
        else:
            parsed = _iso(text) or _strptime(text, TIME_FORMATS)
        if parsed is None:
            raise RowError(column, f"{text!r} is not a time (e.g. 2026-11-23 14:05:00)")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.zone)
        if parsed < EARLIEST:
            raise RowError(column, f"{text!r} is before {EARLIEST.date().isoformat()}: check the date")
        if parsed > utcnow() + MAX_FUTURE:
            raise RowError(column, f"{text!r} is in the future: check the date")
        return parsed.isoformat()

    def _amount(self, text: str, column: str, *, required: bool) -> Decimal | None:
        cleaned = text.replace("¥", "").replace("￥", "").replace(",", "").strip()
        if not cleaned:
            if required:
                raise RowError(column, "an amount is required")
            return None
        try:
            amount = Decimal(cleaned)
        except InvalidOperation:
            raise RowError(column, f"{text!r} is not an amount") from None
        if not amount.is_finite():
            raise RowError(column, f"{text!r} is not an amount")
        if amount < 0:
            raise RowError(column, f"{text!r}: the amount must be zero or more")
        if amount > MAX_AMOUNT:
            what = "one price" if self.kind == "products" else "one order"
            raise RowError(column, f"{text!r} is more than the {MAX_AMOUNT:,} yuan {what} may be")
        return amount

    def _identifiers(self, values: list[Any]) -> tuple[str | None, list[dict[str, str]], list[str]]:
        member_id: str | None = None
        ids: list[dict[str, str]] = []
        columns: list[str] = []
        for id_type, column in self.id_columns.items():
            value = self.get(values, column)
            # Marketplaces mask phones (138****5678): a masked value identifies nobody, so it is left out.
            if not value or "*" in value:
                continue
            if id_type == "member_id":
                member_id = value
                continue
            ids.append({"id": value, "type": id_type})
            columns.append(column)
        if member_id is None and not ids:
            cols = ", ".join(self.label(c) for c in self.id_columns.values())
            raise RowError(next(iter(self.id_columns.values())), f"the row names nobody: fill one of {cols}")
        return member_id, ids, columns

    def convert(self, number: int, values: list[Any]) -> RowEvents:
        """The events of one row; RowError or Skip otherwise."""
        member_id, ids, id_columns = self._identifiers(values)
        context: dict[str, Any] = {
            "channel": f"import:{self.source}",
            "externalIds": ids,
            "import": {"file": self.filename, "row": number},
        }
        base: dict[str, Any] = {"context": context}
        if member_id:
            base["userId"] = member_id
        m = self.mapping
        if self.kind == "members":
            if not member_id:
                return self._member(number, values, base, id_columns)
            column = self.mapping.identifiers.get("member_id", "")
            digest = self.first_of("member", member_id, values, column)
            row = self._member(number, values, base, id_columns)
            self.seen[member_id] = (number, digest)
            row.key = member_id
            return row

        order_id = self.get(values, m.order_id)
        if not order_id:
            raise RowError(m.order_id, "an order id is required")
        digest = self.first_of("order", order_id, values, m.order_id)
        status_text = self.get(values, m.status)
        status = m.status_map.get(status_text) if status_text else "completed"
        if status is None:
            # Counting an unknown status as a sale would count refunds and cancellations as revenue.
            known = ", ".join(sorted(m.status_map)) or "none"
            raise RowError(
                m.status,
                f"status {status_text!r} is not in the mapping's status_map (known: {known}); "
                "map it to completed, refunded or skip with --mapping",
            )
        if status == "skip":
            raise Skip(status_text)
        amount = self._amount(self.get(values, m.amount), m.amount, required=True)
        refund = self._amount(self.get(values, m.refund_amount), m.refund_amount, required=False)
        when = self._time(self.get(values, m.time), m.time)
        props: dict[str, Any] = {
            "order_id": order_id,
            "total": str(amount),
            "revenue": str(amount),
            "currency": "CNY",
        }
        props["channel"] = self.source
        for key, column in (("store", m.store), ("associate", m.associate)):
            value = self.get(values, column)
            if value:
                props[key] = value
        if "associate" in props:
            self._check_associate(
                props["associate"],
                m.associate,
                "the WeCom UserID or username of no user",
                "siyu users create",
            )
        if "store" in props:
            # The store is whose revenue the order is: an unknown one would count it for no store.
            props["store"] = self._known_store(props["store"], m.store, "is the code or name of no store")
        skus = self.get(values, m.products)
        if skus:
            props["products"] = [
                {"sku": s.strip()} for s in re.split(r"[,;|\uff0c\uff1b]", skus) if s.strip()
            ]
        events = [
            {
                **base,
                "type": "track",
                "event": "Order Completed",
                "messageId": f"import:{self.source}:order:{order_id}",
                "timestamp": when,
                "properties": props,
            }
        ]
        refunded = amount if status == "refunded" and not refund else refund
        if refunded:
            events.append(
                {
                    **base,
                    "type": "track",
                    "event": "Order Refunded",
                    "messageId": f"import:{self.source}:refund:{order_id}",
                    "timestamp": when,
                    "properties": {
                        "order_id": order_id,
                        "total": str(refunded),
                        "currency": "CNY",
                        "channel": self.source,
                    },
                }
            )
        self.seen[order_id] = (number, digest)
        return RowEvents(number, events, id_columns, order_id)

    def _member(
        self, number: int, values: list[Any], base: dict[str, Any], id_columns: list[str]
    ) -> RowEvents:
        m = self.mapping
        traits: dict[str, Any] = {}
        for trait, column in m.traits.items():
            value = self.get(values, column)
            if value:
                traits[trait] = value
        for trait, column in (("home_store", m.store), ("advisor", m.associate)):
            value = self.get(values, column)
            if value:
                traits[trait] = value
        if "birthday" in traits:
            traits["birthday"] = _birthday(traits["birthday"], m.traits.get("birthday", ""))
        if "gender" in traits:
            traits["gender"] = _gender(traits["gender"], m.traits.get("gender", ""))
        if "advisor" in traits:
            # An advisor decides who serves her and who sees her: an unknown one would leave her with nobody.
            self._check_associate(
                traits["advisor"],
                m.associate,
                "the WeCom UserID of no active user",
                "siyu users create --wecom-userid",
            )
        if "home_store" in traits:
            # A home store decides who may see the member: an unknown code would leave her with none.
            traits["home_store"] = self._known_store(traits["home_store"], m.store, "does not exist")
        event: dict[str, Any] = {**base, "type": "identify", "traits": traits}
        joined = self.get(values, m.joined_at)
        if joined:
            event["timestamp"] = self._time(joined, m.joined_at)
            traits["joined_at"] = event["timestamp"]
        digest = hashlib.sha1(
            orjson.dumps([self.source, base.get("userId"), base["context"]["externalIds"], traits]),
            usedforsecurity=False,
        )
        event["messageId"] = f"import:{self.source}:member:{digest.hexdigest()}"
        # A member row enrols the customer in the programme (once: the key is the person, not the row).
        person = base.get("userId") or orjson.dumps(base["context"]["externalIds"]).decode()
        joined_event: dict[str, Any] = {
            **base,
            "type": "track",
            "event": "Membership Joined",
            "messageId": f"import:{self.source}:joined:{hashlib.sha1(str(person).encode(), usedforsecurity=False).hexdigest()}",
            "properties": {
                "channel": f"import:{self.source}",
                **({"tier": traits["tier"]} if "tier" in traits else {}),
            },
        }
        if "timestamp" in event:
            joined_event["timestamp"] = event["timestamp"]
        return RowEvents(number, [event, joined_event], id_columns)


_GENDERS = {
    "male": "male",
    "m": "male",
    "man": "male",
    "男": "male",
    "1": "male",  # WeChat's and WeCom's code
    "female": "female",
    "f": "female",
    "woman": "female",
    "女": "female",
    "2": "female",
    "unknown": "unknown",
    "未知": "unknown",
    "0": "unknown",
}
_BIRTHDAY_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d")


def _birthday(text: str, column: str) -> str:
    """A birthday as the journeys read it (2026-01-31, or 01-31 when the year is not given); RowError else."""
    value = text.strip()
    for fmt in _BIRTHDAY_FORMATS:
        try:
            day = dt.datetime.strptime(value, fmt).date()
        except ValueError:
            continue
        if not 1900 <= day.year <= dt.date.today().year:
            raise RowError(column, f"{text!r}: a birthday between 1900 and this year")
        return day.isoformat()
    try:
        dt.datetime.strptime(f"2000-{value.replace('/', '-')}", "%Y-%m-%d")  # a leap year: 02-29 is a day
    except ValueError:
        raise RowError(
            column, f"{text!r} is not a date (e.g. 1990-02-28, or 02-28 without the year)"
        ) from None
    month, _, day_of_month = value.replace("/", "-").partition("-")
    return f"{int(month):02d}-{int(day_of_month):02d}"


def _gender(text: str, column: str) -> str:
    """male, female or unknown; RowError naming the accepted spellings otherwise."""
    value = _GENDERS.get(text.strip().lower())
    if value is None:
        raise RowError(column, f"{text!r} is not a gender: use male, female or unknown (男, 女, 1, 2, 0 too)")
    return value


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rejection_column(reason: str, row: RowEvents, converter: RowConverter) -> str:
    """The column an ingest rejection is about, from the field it names."""
    match = _EXTERNAL_ID.search(reason)
    if match and int(match.group(1)) < len(row.id_columns):
        return row.id_columns[int(match.group(1))]
    if reason.startswith("userId"):
        return converter.mapping.identifiers.get("member_id", "")
    if reason.startswith("timestamp"):
        return converter.mapping.joined_at if converter.kind == "members" else converter.mapping.time
    return ""


def check_file(path: Path, *, kind: str, source: str, mapping: Mapping, filename: str | None = None) -> None:
    """BadRequest when path cannot be read or lacks the mapping's columns (nothing is written)."""
    sheet = readers.open_sheet(path)
    RowConverter(kind, source, mapping, sheet.header, filename or path.name)
    close = getattr(sheet.rows, "close", None)
    if close is not None:
        close()


def run_import(
    path: Path,
    *,
    kind: str,
    source: str,
    mapping: Mapping,
    actor: str = "",
    filename: str | None = None,
    chunk_rows: int = 2000,
    error_report: Path | None = None,
    progress: Callable[[int], None] | None = None,
    settings: Settings | None = None,
    analyze_every: int = ANALYZE_EVERY,
) -> ImportResult:
    """Import every row of path; BadRequest before anything is written if the file or mapping is wrong.

    On PostgreSQL the tables an import grows are analysed every analyze_every imported rows.
    """
    settings = settings or get_settings()
    sheet = readers.open_sheet(path)
    filename = filename or path.name
    converter = RowConverter(kind, source, mapping, sheet.header, filename)
    with unit_of_work() as session:
        if kind in ("members", "orders") and mapping.store:
            # A row may name its store by code (any case) or, as many POS exports do, by its name.
            converter.stores = {}
            for code, name in session.execute(select(Store.code, Store.name)).all():
                converter.stores.setdefault(name.strip().upper(), code)
            converter.stores.update({code.upper(): code for code in converter.stores.values()})
        if kind == "members" and mapping.associate:
            wecom_ids = session.execute(select(User.wecom_userid).where(User.is_active)).scalars()
            converter.advisors = frozenset(u for u in wecom_ids if u)
        if kind == "orders" and mapping.associate:
            # A sale is credited to its associate by WeCom UserID or username (as QR codes name them); staff
            # who have left still name their past sales.
            names = session.execute(select(User.wecom_userid, User.username)).all()
            converter.advisors = frozenset(n for row in names for n in row if n)
        record = FileImport(
            kind=kind, source=source, filename=filename[:255], file_sha256=file_sha256(path), actor=actor
        )
        session.add(record)
        session.flush()
        result = ImportResult(import_id=record.id)
    analyzed_at = 0
    try:
        for chunk in _chunks(sheet.rows, chunk_rows):
            _import_chunk(chunk, converter, result, settings)
            if result.rows_imported - analyzed_at >= analyze_every:
                _analyze()
                analyzed_at = result.rows_imported
            if progress is not None:
                progress(len(chunk))
    except BaseException as exc:  # Ctrl-C too: the record says where it stopped
        _finish(result, ImportStatus.failed, error_report, path, converter, f"{type(exc).__name__}: {exc}")
        raise
    _finish(result, ImportStatus.done, error_report, path, converter, None)
    return result


def _analyze() -> None:
    """ANALYZE the tables an import grows (PostgreSQL; SQLite's planner prefers the indexes unasked)."""
    with unit_of_work() as session:
        if is_postgres(session):
            session.execute(text(f"ANALYZE {', '.join(GROWN_TABLES)}"))


def _chunks(rows: Iterable[tuple[int, list[Any]]], size: int) -> Iterable[list[tuple[int, list[Any]]]]:
    chunk: list[tuple[int, list[Any]]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _import_products(
    chunk: list[tuple[int, list[Any]]], converter: RowConverter, result: ImportResult
) -> None:
    products: list[dict[str, Any]] = []
    failures: list[Failure] = []
    repeats = 0
    for number, values in chunk:
        try:
            products.append(converter.product(number, values))
        except RowError as exc:
            failures.append(
                Failure(number, converter.label(exc.column), converter.get(values, exc.column), exc.reason)
            )
        except Repeat:
            repeats += 1
    with unit_of_work() as session:
        outcome = upsert_products(session, products, source=converter.source)
        record = session.get(FileImport, result.import_id)
        assert record is not None
        record.rows_read += len(chunk)
        record.rows_imported += outcome.created + outcome.updated
        record.rows_duplicate += outcome.unchanged + repeats
        record.rows_failed += len(failures)
    result.rows_read += len(chunk)
    result.rows_imported += outcome.created + outcome.updated
    result.rows_duplicate += outcome.unchanged + repeats
    result.failures.extend(failures)


def _import_chunk(
    chunk: list[tuple[int, list[Any]]],
    converter: RowConverter,
    result: ImportResult,
    settings: Settings,
) -> None:
    if converter.kind == "products":
        _import_products(chunk, converter, result)
        return
    converted: list[RowEvents] = []
    failures: list[Failure] = []
    skipped = repeats = 0
    for number, values in chunk:
        try:
            converted.append(converter.convert(number, values))
        except RowError as exc:
            failures.append(
                Failure(number, converter.label(exc.column), converter.get(values, exc.column), exc.reason)
            )
        except Skip:
            skipped += 1
        except Repeat:
            repeats += 1
    events = [ev for row in converted for ev in row.events]
    owner = [row for row in converted for _ in row.events]
    with unit_of_work() as session:
        # Rows whose order (or member row) is already stored: a re-run or a resumed import.
        firsts = [row.events[0]["messageId"] for row in converted]
        existing: dict[str, int] = {}  # messageId -> the stored amount in fen
        for i in range(0, len(firsts), 10_000):
            existing.update(
                session.execute(
                    select(Event.message_id, Event.amount_fen).where(
                        bulk.matches(session, Event.message_id, firsts[i : i + 10_000])
                    )
                ).all()
            )
        batch = ingest_batch(session, events, source_key_id=None, settings=settings) if events else None
        refused: set[int] = set()
        values_of = dict(chunk)
        for rejection in batch.errors if batch is not None else []:
            row = owner[rejection.index]
            if row.number in refused:
                continue
            refused.add(row.number)
            if row.key is not None and converter.seen.get(row.key, (0, 0))[0] == row.number:
                del converter.seen[row.key]  # refused: a later row of the same order may still be imported
            column = _rejection_column(rejection.reason, row, converter)
            values = values_of[row.number]
            # The column is named, so the event field the pipeline names would only confuse.
            reason = _EXTERNAL_ID_FIELD.sub("", rejection.reason) if column else rejection.reason
            failures.append(
                Failure(row.number, converter.label(column), converter.get(values, column), reason)
            )
        if converter.kind == "orders":
            # An order imported before with another amount (a later export, a corrected file): not applied,
            # and said, rather than counted as already there.
            for row in converted:
                first = row.events[0]
                before = existing.get(first["messageId"])
                total = Decimal(first["properties"]["total"])
                if row.number in refused or before is None or before == int(total * 100):
                    continue
                refused.add(row.number)
                column = converter.mapping.amount
                failures.append(
                    Failure(
                        row.number,
                        converter.label(column),
                        converter.get(values_of[row.number], column),
                        f"order {row.key!r} was imported before with {before / 100:.2f}: a changed amount is "
                        "not applied (a refund is its own row or refund_amount)",
                    )
                )
        ok = [row for row in converted if row.number not in refused]
        stored = sum(1 for row in ok if row.events[0]["messageId"] in existing)
        imported = len(ok) - stored
        duplicate = stored + repeats
        record = session.get(FileImport, result.import_id)
        assert record is not None
        record.rows_read += len(chunk)
        record.rows_imported += imported
        record.rows_duplicate += duplicate
        record.rows_skipped += skipped
        record.rows_failed += len(failures)
    result.rows_read += len(chunk)
    result.rows_imported += imported
    result.rows_duplicate += duplicate
    result.rows_skipped += skipped
    result.failures.extend(sorted(failures, key=lambda f: f.row))


def _finish(
    result: ImportResult,
    status: ImportStatus,
    error_report: Path | None,
    path: Path,
    converter: RowConverter,
    message: str | None,
) -> None:
    if result.failures:
        report = error_report or path.with_name(path.name + ".errors.csv")
        with report.open("w", encoding="utf-8-sig", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["row", "column", "value", "reason"])
            for failure in result.failures:
                writer.writerow(
                    [failure.row, failure.column, csv_cell(failure.value), csv_cell(failure.reason)]
                )
        result.error_report = report
    with unit_of_work() as session:
        record = session.get(FileImport, result.import_id)
        assert record is not None
        record.status = status
        record.finished_at = utcnow()
        record.message = message
        record.error_report = str(result.error_report) if result.error_report else None
