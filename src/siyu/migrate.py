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
