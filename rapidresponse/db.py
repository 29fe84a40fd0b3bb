"""Database engine, sessions and schema migrations (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

READ_ONLY = "rapidresponse_read_only"  # an execution option: this transaction only reads
SQLITE_BUSY_TIMEOUT_MS = 15_000
# PostgreSQL: a server that does not answer a connection attempt within this is down.
CONNECT_TIMEOUT_S = 5
# The webhook's own connections (``Database.hurried``). Few on purpose: measured with
# the inbound benchmark on PostgreSQL, 8 connections gave a p99 of 1.2 s at 50 texts at
# once where 30 gave 2.0 s and 64 gave 4.0 s (more transactions at once only wait for
# each other's locks, and for the GIL). A text waits at most a lock wait for one.
HURRIED_POOL_SIZE = 8
HURRIED_POOL_OVERFLOW = 0
MIGRATIONS_PATH = Path(__file__).resolve().parent.parent / "migrations"

# Applied to every SQLite connection. WAL lets the web app read while a worker writes;
# secure_delete overwrites deleted rows (purged report text must not linger in free pages);
# SQLite leaves foreign keys off unless asked.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA secure_delete=ON",
    "PRAGMA foreign_keys=ON",
)


def _apply_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the sqlite3 module, which would only BEGIN at the
    # first write: a read before that would see data another process then changes.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _begin_immediately(connection: Any) -> None:
    # One writer at a time, from the first statement on: "read the state, then change
    # it" can never interleave with another process doing the same (SQLite has no
    # SELECT ... FOR UPDATE). Fine for the one small server SQLite is meant for.
    # A session that only reads (``Database.reading``) takes a snapshot instead, and
    # never waits for, or holds up, a writer.
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def make_engine(
    url: str, *, lock_wait_ms: int | None = None, pre_ping: bool = True, **options: Any
) -> Engine:
    """Create an engine, preparing the SQLite file's folder and pragmas when needed.

    Its errors never quote a statement's parameters (``hide_parameters``): they are
    e-mail addresses, names, sealed text, and an error's message goes further than the
    data (logs, RQ's failed-job registry, a bug report).

    ``lock_wait_ms`` bounds how long a statement waits for a lock (SQLite's busy
    timeout, PostgreSQL's ``lock_timeout``), set once per connection: no statement per
    transaction.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
        if lock_wait_ms is not None:
            connect_args["options"] = f"-c lock_timeout={int(lock_wait_ms)}"
        engine = create_engine(
            url,
            pool_pre_ping=pre_ping,
            connect_args=connect_args,
            hide_parameters=True,
            **options,
        )
        event.listen(engine, "handle_error", _without_row_values)
        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    wait_s = (SQLITE_BUSY_TIMEOUT_MS if lock_wait_ms is None else lock_wait_ms) / 1000
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": wait_s},
        hide_parameters=True,
        **options,
    )
    event.listen(engine, "connect", _apply_sqlite_pragmas)
    event.listen(engine, "begin", _begin_immediately)
    return engine


def _without_row_values(context: Any) -> None:
    """PostgreSQL's message for a refused row quotes it ("DETAIL: Failing row contains
    (…)", "Key (email)=(…) already exists"): keep only the primary message, as
    ``hide_parameters`` does for the statement's values."""
    original = context.original_exception
    primary = getattr(getattr(original, "diag", None), "message_primary", None)
    if not primary:
        return
    full = str(original)
    original.args = (primary,)
    wrapped = context.sqlalchemy_exception  # its message was made from the full one
    if wrapped is not None and wrapped.args and isinstance(wrapped.args[0], str):
        wrapped.args = (wrapped.args[0].replace(full, primary), *wrapped.args[1:])


class Database:
    """One engine and session factory per process.

    Processes that fork (RQ's work horses) call ``after_fork`` so that a child never
    reuses the parent's pooled connections.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._hurried: dict[int, Engine] = {}  # the webhook's engines, by lock wait
        # Re-entrant: a write session opened inside another in the same thread meets
        # SQLite's own lock (and its wait), as it always did, rather than a deadlock.
        self._writers = threading.RLock()
        self.read_sessions = sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._pid = os.getpid()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def after_fork(self) -> None:
        if os.getpid() != self._pid:
            self.engine.dispose(close=False)
            for engine in self._hurried.values():
                engine.dispose(close=False)
            self._writers = threading.RLock()  # a fork copies a lock another thread held
            self._pid = os.getpid()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._writing(self.sessions, SQLITE_BUSY_TIMEOUT_MS) as session:
            yield session

    @contextmanager
    def hurried(self, lock_wait_ms: int) -> Iterator[Session]:
        """Like ``session``, but a lock not granted within ``lock_wait_ms`` is an
        ``OperationalError`` instead of a long wait."""
        engine = self._hurried.get(lock_wait_ms)
        if engine is None:
            engine = self._hurried[lock_wait_ms] = self._hurried_engine(lock_wait_ms)
        sessions = functools.partial(Session, engine, expire_on_commit=False)
        with self._writing(sessions, lock_wait_ms) as session:
            yield session

    def _hurried_engine(self, lock_wait_ms: int) -> Engine:
        """Its own connections, each set once to wait ``lock_wait_ms`` for a lock. No
        ping before each use: the webhook tries twice, and a dead connection's error
        empties the pool, so the second try gets a live one."""
        if self.engine.dialect.name == "sqlite":
            return make_engine(self.url, lock_wait_ms=lock_wait_ms)
        return make_engine(
            self.url,
            lock_wait_ms=lock_wait_ms,
            pre_ping=False,
            pool_size=HURRIED_POOL_SIZE,
            max_overflow=HURRIED_POOL_OVERFLOW,
            pool_timeout=lock_wait_ms / 1000,
        )

    @contextmanager
    def _writing(self, make: Callable[[], Session], lock_wait_ms: int) -> Iterator[Session]:
        self.after_fork()
        with self._writer_turn(lock_wait_ms):
            session = make()
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    @contextmanager
    def _writer_turn(self, lock_wait_ms: int) -> Iterator[None]:
        """SQLite: this process's threads take turns at the write lock here first.

        SQLite lets one writer in; the others poll with growing sleeps, so under load a
        thread can lose for seconds. Queueing on a lock here first hands the database
        on as soon as it is free (other processes still meet SQLite's own wait).
        """
        if self.engine.dialect.name != "sqlite":
            yield
            return
        if not self._writers.acquire(timeout=lock_wait_ms / 1000):
            raise OperationalError(
                "BEGIN IMMEDIATE", None, TimeoutError("database is locked (by this process)")
            )
        try:
            yield
        finally:
            self._writers.release()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only: on SQLite it takes no write lock (a snapshot in WAL
        mode). It is rolled back at the end, so a write in it would be lost."""
        self.after_fork()
        session = self.read_sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()
        for engine in self._hurried.values():
            engine.dispose()


def alembic_config(url: str) -> Any:
    """An Alembic Config pointing at our migrations and the given database."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_PATH))
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def insert_ignoring_duplicates(
    session: Session, model: Any, values: dict[str, Any], unique: Any
) -> postgresql.Insert | sqlite.Insert:
    """``INSERT … ON CONFLICT (unique) DO NOTHING`` in the session's dialect (both speak
    it): a row another transaction inserted first is no error, and nothing is inserted."""
    if session.get_bind().dialect.name == "postgresql":
        return (
            postgresql.insert(model).values(values).on_conflict_do_nothing(index_elements=[unique])
        )
    return sqlite.insert(model).values(values).on_conflict_do_nothing(index_elements=[unique])
