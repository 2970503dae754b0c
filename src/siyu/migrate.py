"""Run Alembic migrations from code: the CLI, the demo and the tests share this."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config


def alembic_config(url: str) -> Config:
    """An Alembic config for url that works from an installed package as well as a checkout."""
    config = Config()
    config.set_main_option("script_location", str(files("siyu") / "migrations"))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at url to revision."""
    command.upgrade(alembic_config(url), revision)


def schema_problem(url: str) -> str | None:
    """Why the database at url cannot be used as it is (missing, never migrated, behind), or None.

    Checked before a command opens it: SQLite would otherwise create an empty file and the command fail on
    its first table ("no such table").
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        from pathlib import Path

        if not Path(parsed.database).exists():
            return (
                f"no database at {Path(parsed.database).resolve()}: run `siyu db upgrade` to create it here, "
                "or set SIYU_DATABASE_URL to yours (run siyu in the directory that holds ./var)"
            )
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        return f"cannot open the database: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    if current is None:
        return "the database is empty (never migrated): run `siyu db upgrade`"
    if current != head:
        return f"the database is at revision {current}, this siyu needs {head}: run `siyu db upgrade`"
    return None
