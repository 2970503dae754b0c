"""The brand's organisation: regions and stores (sales associates are users)."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK


class Region(Base):
    """A sales region, managed by regional managers."""

    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))


class Store(Base):
    """A physical store with its team of sales associates."""

    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    city: Mapped[str] = mapped_column(String(60), default="")
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)
