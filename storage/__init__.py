"""Persistence: ``engine`` (SQLite and PostgreSQL behind one async API), ``schema`` (numbered
migrations), and one store module per data area."""
