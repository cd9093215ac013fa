"""The cursor handed to every transaction function."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from storage.engine.sql import to_pyformat

# How many rows psycopg2's execute_batch packs into one round trip; its own default.
_BATCH_PAGE_SIZE = 100


class Cursor:
    """A DB-API cursor that speaks ``?`` placeholders on both engines.

    Store code branches on ``engine_name`` only for the rare real difference between the
    engines; ``INSERT ... ON CONFLICT`` and ``RETURNING`` work on both (SQLite >= 3.35).
    """

    def __init__(self, raw: Any, engine_name: str) -> None:
        self._raw = raw
        self.engine_name = engine_name
        self._convert = engine_name == "psycopg2"
        self._after_commit: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def _sql(self, sql: str) -> str:
        return to_pyformat(sql) if self._convert else sql

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        # Always pass a tuple: psycopg2 only interprets "%" when given parameters, and the
        # conversion doubled them, so a bare call would send "%%" to the server.
        self._raw.execute(self._sql(sql), tuple(args))

    def executemany(self, sql: str, args_seq: Iterable[Sequence[Any]]) -> None:
        self._raw.executemany(self._sql(sql), [tuple(a) for a in args_seq])

    def execute_batch(self, sql: str, args_seq: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many argument rows, in as few round trips as the driver can.

        psycopg2's ``executemany`` is a loop of single statements over the network; its
        ``execute_batch`` joins them. SQLite is in-process, so ``executemany`` is already fast.
        ``rowcount`` is not meaningful afterwards.
        """
        rows = [tuple(a) for a in args_seq]
        if not rows:
            return
        if self._convert:
            from psycopg2.extras import execute_batch

            execute_batch(self._raw, self._sql(sql), rows, page_size=_BATCH_PAGE_SIZE)
        else:
            self._raw.executemany(sql, rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._raw.fetchone()
        return row

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._raw.fetchall())

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        return list(self._raw.fetchmany(size))

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._raw)

    @property
    def rowcount(self) -> int:
        count: int = self._raw.rowcount
        return count

    @property
    def description(self) -> Any:
        return self._raw.description

    def call_after_commit(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` on the reactor thread once this transaction has committed.

        For cache invalidation and wake-ups: they must not happen if the transaction rolls
        back, and must not happen twice if it is retried (a retry starts with a fresh cursor).
        """
        self._after_commit.append((callback, args))

    def close(self) -> None:
        self._raw.close()
