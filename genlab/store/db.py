"""Opening a store database: the URL, SQLite's settings, and the Alembic migrations.

The default is a SQLite file, ``genlab.db`` in the working directory (or ``GENLAB_DB``), in WAL
mode with a busy timeout so that the service's threads and a CLI can use it at once. Any SQLAlchemy
URL works (``postgresql+psycopg://…`` for a team). Opening a store upgrades its schema to the
latest migration; a database written by a newer genlab is refused rather than guessed at.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool

from genlab.errors import StoreError

logger = logging.getLogger(__name__)

DB_ENV = "GENLAB_DB"
HOME_ENV = "GENLAB_STORE_HOME"
DEFAULT_DB = "genlab.db"
BUSY_TIMEOUT_MS = 30_000
MIGRATIONS = Path(__file__).parent / "migrations"


def resolve_url(url: str | os.PathLike[str] | None = None) -> str:
    """``url``, else ``$GENLAB_DB``, else ``genlab.db`` here; a bare file path means SQLite."""
    url = str(url or os.environ.get(DB_ENV) or DEFAULT_DB)
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def home_for(url: str, home: str | os.PathLike[str] | None = None) -> Path:
    """Where media files and vector indexes live: ``home``, else ``$GENLAB_STORE_HOME``, else beside a
    SQLite file (``genlab.db`` → ``genlab.db.d/``), else ``./genlab-store``."""
    if home or os.environ.get(HOME_ENV):
        return Path(home or os.environ[HOME_ENV]).expanduser().resolve()
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///"))
        return path.with_name(path.name + ".d")
    return Path("genlab-store").resolve()


def _sqlite_settings(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # wait for the write lock instead of failing
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint; safe against corruption
    cursor.close()


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            if url != "sqlite:///:memory:":
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            # a connection per checkout: SQLite connections are cheap and WAL handles the concurrency
            engine = create_engine(url, poolclass=NullPool, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_settings)
            # BEGIN IMMEDIATE for writes would be ideal; SQLAlchemy's default deferred BEGIN plus the busy
            # timeout is enough at our write rates
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database URL {url!r}: {exc}. Give a SQLite path or a SQLAlchemy URL such "
                         "as postgresql+psycopg://user@host/db (with its driver installed).") from None  # fmt: skip
    return engine


def _alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the latest migration (a no-op when it is there already)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise StoreError(f"cannot open the store database {engine.url!r}: {exc.orig}.") from None
    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if current is not None and current not in known:
        raise StoreError(f"the store {engine.url!r} is at schema revision {current}, which this genlab does not "
                         "know (written by a newer genlab?); upgrade genlab.")  # fmt: skip
    if current == head_revision():
        return
    if current is None and inspect(engine).has_table("generations"):
        raise StoreError(f"{engine.url!r} has genlab-like tables but no migration record; it was not made by "
                         "`genlab`. Point GENLAB_DB at a new file.")  # fmt: skip
    logger.info("migrating %s from %s to %s", engine.url, current, head_revision())
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "head")
