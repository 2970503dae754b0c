"""Alembic environment: the URL comes from the caller's config or from SIYU_DATABASE_URL."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from siyu.db import EnumText, create_db_engine
from siyu.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    from siyu.config import get_settings

    return config.attributes.get("url") or get_settings().database_url


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # An enum column is a plain string in the database; migrations must not import the enum.
    if type_ == "type" and isinstance(obj, EnumText):
        return f"sa.String(length={getattr(obj.impl_instance, 'length', None)})"
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            render_item=_render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_db_engine(_url())
    with engine.connect() as conn:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=True,
            render_item=_render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
