"""Schema revisions: the newest one, and where a database stands (alembic is imported only
to migrate, so that opening a current database stays quick)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import inspect

_MIGRATIONS = Path(__file__).with_name("migrations")


#: The newest schema revision (a test checks it against the migrations): a database already
#: there is opened without importing alembic.
HEAD_REVISION = "0007"


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    """The head of the migration scripts (imports alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _current_revision(connection: Any) -> str | None:
    """The schema revision a database is at (None: no Arena schema), read directly."""
    if "alembic_version" not in set(inspect(connection).get_table_names()):
        return None
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
