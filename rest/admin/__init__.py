"""Synapse's admin API (``/_synapse/admin/...``), as far as Hearth implements it."""
