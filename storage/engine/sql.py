"""Turning Hearth's one SQL dialect into what each driver wants.

Store code writes ``?`` placeholders everywhere. psycopg2 wants ``%s`` and treats every other
``%`` in the statement (string literals included) as a format character, so the conversion
must double those. A ``?`` inside a string literal, a quoted identifier or a comment is text,
not a placeholder, hence the small scanner instead of ``str.replace``.

Not supported (neither is portable): PostgreSQL's jsonb ``?`` operators (use
``jsonb_exists``), dollar-quoted strings and ``E'...'`` backslash escapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache


def _scan(sql: str) -> Iterator[tuple[str, str]]:
    """Yield ``(kind, text)`` pieces: kind is "code", "quoted" or "comment"."""
    i = 0
    n = len(sql)
    start = 0
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            if start < i:
                yield "code", sql[start:i]
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    # A doubled quote is an escaped quote, not the end of the literal.
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            yield "quoted", sql[i : j + 1]
            i = start = j + 1
        elif sql.startswith("--", i):
            if start < i:
                yield "code", sql[start:i]
            j = sql.find("\n", i)
            j = n if j == -1 else j
            yield "comment", sql[i:j]
            i = start = j
        elif sql.startswith("/*", i):
            if start < i:
                yield "code", sql[start:i]
            j = sql.find("*/", i + 2)
            j = n if j == -1 else j + 2
            yield "comment", sql[i:j]
            i = start = j
        else:
            i += 1
    if start < n:
        yield "code", sql[start:]


@lru_cache(maxsize=4096)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders to psycopg2's ``%s``, with every literal ``%`` doubled."""
    out = []
    for kind, text in _scan(sql):
        text = text.replace("%", "%%")
        if kind == "code":
            text = text.replace("?", "%s")
        out.append(text)
    return "".join(out)


def split_statements(script: str) -> list[str]:
    """Split a migration script on the ``;`` that end statements.

    sqlite3's ``execute`` runs exactly one statement, and ``executescript`` would commit
    behind our back, so migration files are run statement by statement on both engines.
    """
    statements: list[str] = []
    current: list[str] = []
    for kind, text in _scan(script):
        if kind == "comment":
            continue
        if kind == "quoted":
            current.append(text)
            continue
        parts = text.split(";")
        for k, part in enumerate(parts):
            current.append(part)
            if k < len(parts) - 1:
                statement = "".join(current).strip()
                if statement:
                    statements.append(statement)
                current = []
    tail = "".join(current).strip()
    if tail:
        statements.append(tail)
    return statements
