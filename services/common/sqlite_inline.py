"""SQLite on the event loop's own thread, under SQLAlchemy's aiosqlite dialect.

aiosqlite runs every call on a worker thread and wakes the loop for each result: four
round trips per statement (cursor, execute, fetch, close). For SQLite's statements of a
few microseconds the round trips cost more than the work -- a quarter of the tracker's
CPU under load -- and set the two threads trading the GIL. Here the same calls run
inline. What that gives up: the loop waits while a statement runs. That is sound only
because no connection of the process ever waits for SQLite's lock (every transaction
takes its turn first: `database.transaction_turn`) and a WAL commit with
synchronous=NORMAL does not fsync.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import make_url


class _RunNow:
    """Stands in for aiosqlite's queue to its worker thread: runs each call at once.
    (SQLAlchemy's adapter puts some calls on that queue itself.)"""

    def put_nowait(self, item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection with no worker thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()  # no thread to start


def inline_connector(url: str, **options: Any) -> Callable[[], Any]:
    """`async_creator` for `create_async_engine`: connections to the database at `url`."""
    args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(make_url(url))
    # The pool may close a connection from another thread (a finaliser, say).
    kwargs.update(options, check_same_thread=False)

    def open_database() -> sqlite3.Connection:
        return sqlite3.connect(*args, **kwargs)  # type: ignore[no-any-return,call-overload]

    async def connect() -> InlineConnection:
        connection = InlineConnection(open_database)
        await connection
        return connection

    return connect
