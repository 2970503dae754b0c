"""Rows of a CSV or Excel file, with their spreadsheet row numbers; encodings detected (UTF-8, GBK)."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from siyu.errors import BadRequest


@dataclass(frozen=True, slots=True)
class Sheet:
    """A file's header and an iterator over (row number, values); row 1 is the header."""

    header: list[str]
    rows: Iterator[tuple[int, list[Any]]]
    encoding: str


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: how a spreadsheet names the column."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def detect_encoding(head: bytes) -> str:
    """utf-8-sig when the start decodes as UTF-8, else gb18030 (a superset of GBK, as Chinese Excel saves)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "gb18030"


def open_sheet(path: Path, encoding: str | None = None) -> Sheet:
    """The rows of path (.csv, .txt, .xlsx); BadRequest naming the problem when it cannot be read."""
    if not path.exists():
        raise BadRequest(f"file: {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _xlsx(path)
    if suffix in (".csv", ".txt", ".tsv"):
        return _csv(path, encoding)
    raise BadRequest(f"file: {path.name}: use a .csv or .xlsx file")


def _csv(path: Path, encoding: str | None) -> Sheet:
    with path.open("rb") as raw:
        head = raw.read(256 * 1024)
    encoding = encoding or detect_encoding(head)
    text = path.open(encoding=encoding, newline="", errors="strict")
    sample = head.decode(encoding, errors="ignore")[:8192]
    delimiter = "\t" if path.suffix.lower() == ".tsv" or sample.count("\t") > sample.count(",") else ","
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        text.close()
        raise BadRequest(f"file: {path.name} is empty") from None
    except UnicodeDecodeError as exc:
        text.close()
        raise BadRequest(f"file: {path.name} is not {encoding}: {exc.reason}") from exc

    def rows() -> Iterator[tuple[int, list[Any]]]:
        try:
            for number, row in enumerate(reader, start=2):
                if any(cell.strip() for cell in row):
                    yield number, row
        except UnicodeDecodeError as exc:
            raise BadRequest(
                f"file: {path.name} is not {encoding} after row {reader.line_num}: {exc.reason}"
            ) from exc
        finally:
            text.close()

    return Sheet(header, rows(), encoding)


def _xlsx(path: Path) -> Sheet:
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken file
        raise BadRequest(f"file: {path.name} is not a readable .xlsx file ({type(exc).__name__})") from exc
    sheet = book.worksheets[0]
    values = sheet.iter_rows(values_only=True)
    try:
        first = next(values)
    except StopIteration:
        book.close()
        raise BadRequest(f"file: {path.name} has an empty first sheet") from None
    header = ["" if v is None else str(v).strip() for v in first]

    def rows() -> Iterator[tuple[int, list[Any]]]:
        try:
            for number, row in enumerate(values, start=2):
                cells = list(row)
                if any(c not in (None, "") for c in cells):
                    yield number, cells
        finally:
            book.close()

    return Sheet(header, rows(), "xlsx")


def cell_text(value: Any) -> str:
    """A cell as text: Excel numbers without a spurious .0, datetimes in ISO form."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value).strip()


def count_rows(path: Path) -> int | None:
    """About how many data rows path has (for a progress bar): lines of a CSV, max_row of a sheet."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        try:
            book = load_workbook(path, read_only=True)
            rows = book.worksheets[0].max_row
            book.close()
            return max((rows or 1) - 1, 0)
        except Exception:
            return None
    if not path.exists():
        return None
    with path.open("rb") as f:
        return max(sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b"")) - 1, 0)
