"""The one connection pool of a bridge process, and the mapping of driver failures.

Postgres being down is an expected condition (the HTTP layer answers 503 and keeps
running), so every driver or pool failure to reach the server becomes `DatabaseUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout


class DatabaseUnavailable(RuntimeError):
    """Postgres cannot be reached (or dropped the connection) right now."""


class Database:
    """A lazily connecting pool: constructing it never fails, even while Postgres is down."""

    def __init__(self, url: str, *, max_size: int = 16, timeout: float = 3.0) -> None:
        self.timeout = timeout
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            # A connection that died while idle (server restart) is replaced, not handed out.
            check=ConnectionPool.check_connection,
            # Each reconnection attempt backs off exponentially without bound, so give it
            # up early: the next request that finds the pool empty starts a fresh attempt,
            # and the bridge recovers within seconds of Postgres coming back.
            reconnect_timeout=10.0,
            # Each statement commits on its own unless the caller opens a transaction.
            kwargs={"autocommit": True},
            name="bridge",
        )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; the caller controls transactions."""
        try:
            with self.pool.connection(timeout=self.timeout) as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailable(f"no database connection within {self.timeout}s") from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(str(exc).strip() or "database connection lost") from exc


@contextmanager
def single_connection(url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection for one-shot CLI work, with the same error mapping.

    Callers open transactions explicitly (`with conn.transaction():`).
    """
    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(str(exc).strip() or "database connection lost") from exc
