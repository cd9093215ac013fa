"""The placeholder conversion and statement splitting (pure; no database)."""

from __future__ import annotations

import pytest

from storage.engine.sql import split_statements, to_pyformat


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a FROM t WHERE b = ?", "SELECT a FROM t WHERE b = %s"),
        ("INSERT INTO t VALUES (?, ?, ?)", "INSERT INTO t VALUES (%s, %s, %s)"),
        # A literal % is doubled everywhere, since psycopg2 formats the whole string.
        ("SELECT 1 WHERE a LIKE '100%' AND b = ?", "SELECT 1 WHERE a LIKE '100%%' AND b = %s"),
        ("SELECT 5 % 3", "SELECT 5 %% 3"),
        # ? inside literals, quoted identifiers and comments is text.
        ("SELECT '?', ? FROM t", "SELECT '?', %s FROM t"),
        ('SELECT "odd?col" FROM t WHERE x = ?', 'SELECT "odd?col" FROM t WHERE x = %s'),
        ("SELECT ? -- why?\n, ?", "SELECT %s -- why?\n, %s"),
        ("SELECT /* a ? */ ?", "SELECT /* a ? */ %s"),
        # A doubled quote does not end the literal.
        ("SELECT 'it''s ?' || ?", "SELECT 'it''s ?' || %s"),
        ("SELECT 1", "SELECT 1"),
    ],
)
def test_to_pyformat(sql: str, expected: str) -> None:
    assert to_pyformat(sql) == expected


def test_split_statements_ignores_semicolons_in_literals_and_comments() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE a (x TEXT DEFAULT ';');
        /* block; comment */
        INSERT INTO a VALUES ('it''s; fine');

        CREATE INDEX a_x ON a (x)
    """
    assert split_statements(script) == [
        "CREATE TABLE a (x TEXT DEFAULT ';')",
        "INSERT INTO a VALUES ('it''s; fine')",
        "CREATE INDEX a_x ON a (x)",
    ]


def test_split_statements_empty() -> None:
    assert split_statements("-- nothing\n ; ;\n") == []
