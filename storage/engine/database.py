"""The Database: transactions on a dedicated thread pool, awaited from the reactor."""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from storage.engine.cursor import Cursor
from storage.engine.engines import Engine
from storage.engine.metrics import transaction_retries, transaction_seconds

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# Bounded so a transaction that can never succeed (a hot row, a stuck lock) surfaces as an
# error instead of pinning a pool thread forever.
MAX_ATTEMPTS = 6
_BACKOFF_FIRST = 0.02
_BACKOFF_MAX = 1.0

_Callbacks = list[tuple[Callable[..., object], tuple[Any, ...]]]


class DatabaseClosedError(RuntimeError):
    """A transaction was asked of a Database that is closing or closed."""


class _ReactorCore(Protocol):
    def callWhenRunning(self, callable: Callable[..., Any], *args: Any) -> Any: ...

    def addSystemEventTrigger(
        self, phase: str, eventType: str, callable: Callable[..., Any], *args: Any
    ) -> Any: ...

    def removeSystemEventTrigger(self, triggerID: Any) -> None: ...

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any) -> Any: ...


def _backoff(attempt: int) -> float:
    # Jitter, so two transactions that collided do not collide again in lockstep.
    base = min(_BACKOFF_FIRST * 2 ** (attempt - 1), _BACKOFF_MAX)
    return base * (0.5 + random.random())


class Database:
    """One database, used from the reactor thread.

    Every transaction runs on a pool thread that owns one connection for its lifetime, so
    connections are never shared between threads and are reused across transactions.
    """

    def __init__(self, engine: Engine, reactor: IReactorThreads) -> None:
        self.engine_name = engine.name
        self._engine = engine
        self._reactor = reactor
        self._pool = ThreadPool(engine.pool_min, engine.pool_max, name=f"hearth-db-{engine.name}")
        self._local = threading.local()
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()
        self._in_flight = 0
        self._idle_waiters: list[Deferred[None]] = []
        self._closing = False
        self._closed = False
        self._close_waiters: list[Deferred[None]] = []
        self._closing_at_shutdown = False

        core = cast(_ReactorCore, reactor)
        # Work submitted before the reactor runs (prepare_database at start-up) is queued by
        # the pool and runs once the reactor, and so the pool, starts.
        self._start_trigger = core.callWhenRunning(self._start_pool)
        # A "before" trigger may return a Deferred, and the reactor waits for it: shutting
        # down lets running transactions commit instead of killing them.
        self._shutdown_trigger = core.addSystemEventTrigger(
            "before", "shutdown", self._close_at_shutdown
        )

    async def run_interaction(
        self,
        desc: str,
        func: Callable[Concatenate[Cursor, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run ``func(cursor, *args, **kwargs)`` in one transaction on a pool thread.

        Commits if ``func`` returns, rolls back if it raises. ``func`` may run more than
        once (on serialisation failure, deadlock or a locked SQLite file), so it must not
        have side effects outside the transaction; use ``cursor.call_after_commit``.
        ``desc`` names the operation in metrics and logs: a fixed string, never an id.
        """
        if self._closing:
            raise DatabaseClosedError(
                f"database is closed (or closing); transaction {desc!r} refused"
            )
        self._in_flight += 1
        try:
            # The context (request id for log lines) follows the work into the pool thread.
            ctx = contextvars.copy_context()
            result, callbacks = await deferToThreadPool(
                self._reactor, self._pool, ctx.run, self._transaction, desc, func, args, kwargs
            )
            for callback, cb_args in callbacks:
                try:
                    callback(*cb_args)
                except Exception:
                    # The transaction is committed; a failing follow-up must not turn that
                    # into an error for the caller.
                    logger.exception("after-commit callback of %s failed", desc)
            return result
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle_waiters:
                # On the next reactor turn: firing now would resume close() before our own
                # caller has received this transaction's result.
                core = cast(_ReactorCore, self._reactor)
                core.callLater(0, self._wake_idle_waiters)

    async def execute(self, desc: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement in its own transaction; its rows, or [] if it returns none."""

        def interaction(cursor: Cursor) -> list[tuple[Any, ...]]:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description is not None else []

        return await self.run_interaction(desc, interaction)

    def leave_closing_to_owner(self) -> None:
        """Do not close at reactor shutdown: the owner's own shutdown closes this database
        after its last writes (which the shutdown would otherwise refuse, as both run as
        "before shutdown" triggers at once)."""
        if self._shutdown_trigger is not None and not self._closing_at_shutdown:
            core = cast(_ReactorCore, self._reactor)
            core.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None

    async def close(self) -> None:
        """Refuse new transactions, let running ones finish, then close every connection."""
        if self._closed:
            return
        if self._closing:
            waiter: Deferred[None] = Deferred()
            self._close_waiters.append(waiter)
            await waiter
            return
        self._closing = True
        try:
            if self._in_flight:
                idle: Deferred[None] = Deferred()
                self._idle_waiters.append(idle)
                await idle
            # Every worker is idle now, so joining them is immediate.
            self._pool.stop()
            with self._connections_lock:
                connections, self._connections = self._connections, []
            for conn in connections:
                self._close_connection(conn)
        finally:
            self._closed = True
            core = cast(_ReactorCore, self._reactor)
            if self._start_trigger is not None:
                # The reactor never ran; the pool never started.
                core.removeSystemEventTrigger(self._start_trigger)
                self._start_trigger = None
            if not self._closing_at_shutdown and self._shutdown_trigger is not None:
                core.removeSystemEventTrigger(self._shutdown_trigger)
                self._shutdown_trigger = None
            waiters, self._close_waiters = self._close_waiters, []
            for d in waiters:
                d.callback(None)

    def _wake_idle_waiters(self) -> None:
        if self._in_flight:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.callback(None)

    def _start_pool(self) -> None:
        self._start_trigger = None
        if not self._closing:
            self._pool.start()

    def _close_at_shutdown(self) -> Deferred[None]:
        self._closing_at_shutdown = True
        return Deferred.fromCoroutine(self.close())

    # Everything below runs on pool threads.

    def _transaction(
        self,
        desc: str,
        func: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[R, _Callbacks]:
        start = time.monotonic()
        try:
            attempt = 0
            while True:
                attempt += 1
                conn = self._connection()
                cursor = Cursor(conn.cursor(), self.engine_name)
                committing = False
                try:
                    self._engine.begin(conn)
                    result = func(cursor, *args, **kwargs)
                    committing = True
                    conn.commit()
                    return result, cursor._after_commit
                except BaseException as exc:
                    self._rollback(conn)
                    reason = self._engine.retry_reason(exc)
                    if self._engine.is_dead(conn):
                        self._drop_connection(conn)
                        # A connection lost before COMMIT was sent committed nothing, so running
                        # again is safe; lost during COMMIT, we cannot know, so we must not.
                        if reason is None and not committing:
                            reason = "connection_lost"
                    if reason is None or attempt >= MAX_ATTEMPTS:
                        raise
                    transaction_retries.labels(desc, reason).inc()
                    delay = _backoff(attempt)
                    logger.info(
                        "transaction %s: %s (attempt %d), retrying in %.3fs: %s",
                        desc,
                        reason,
                        attempt,
                        delay,
                        exc,
                    )
                    time.sleep(delay)
                finally:
                    try:
                        cursor.close()
                    except Exception:
                        pass
        finally:
            transaction_seconds.labels(desc).observe(time.monotonic() - start)

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._engine.is_dead(conn):
            self._drop_connection(conn)
            conn = None
        if conn is None:
            conn = self._engine.connect()
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self, conn: Any) -> None:
        logger.warning("database connection lost; reconnecting on next use")
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._connections_lock:
            if conn in self._connections:
                self._connections.remove(conn)
        self._close_connection(conn)

    def _rollback(self, conn: Any) -> None:
        try:
            conn.rollback()
        except Exception:
            # A rollback that fails means the connection is gone or broken; is_dead decides.
            logger.debug("rollback failed", exc_info=True)

    @staticmethod
    def _close_connection(conn: Any) -> None:
        try:
            conn.close()
        except Exception:
            logger.debug("closing a database connection failed", exc_info=True)
