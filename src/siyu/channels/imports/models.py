"""A record of each file import: what was read, imported, skipped and refused."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, UTCDateTime, utcnow


class ImportStatus(enum.StrEnum):
    running = "running"
    done = "done"
    failed = "failed"


class FileImport(Base):
    """One run of `siyu import` or a console upload; counters are committed with each chunk of rows."""

    __tablename__ = "file_imports"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(120), default="")
    status: Mapped[ImportStatus] = mapped_column(EnumText(ImportStatus, 16), default=ImportStatus.running)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_imported: Mapped[int] = mapped_column(Integer, default=0)
    rows_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    rows_skipped: Mapped[int] = mapped_column(Integer, default=0)
    rows_failed: Mapped[int] = mapped_column(Integer, default=0)
    error_report: Mapped[str | None] = mapped_column(Text, default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
