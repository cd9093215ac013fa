"""The bcrypt scheme: hashes made by Synapse's own code verify in Hearth, and back."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from homeserver.passwords import check_password, hash_password

PASSWORDS = ["password", "correct horse battery staple", "Ünïcödé ﬁ", "x" * 100, "ä" * 50]


def _synapse_auth_handler(pepper: str, reactor: Any) -> Any:
    """Just enough of a Synapse AuthHandler for its hash/validate_hash methods."""
    from synapse.handlers.auth import AuthHandler

    hs = SimpleNamespace(
        config=SimpleNamespace(auth=SimpleNamespace(password_pepper=pepper)),
        get_reactor=lambda: reactor,
    )
    fake = SimpleNamespace(hs=hs, bcrypt_rounds=4)
    return SimpleNamespace(
        hash=lambda password: AuthHandler.hash(fake, password),  # type: ignore[arg-type]
        validate_hash=lambda password, stored: AuthHandler.validate_hash(
            fake,  # type: ignore[arg-type]
            password,
            stored,
        ),
    )


@pytest.mark.parametrize("pepper", ["", "some pepper"])
@pytest.mark.parametrize("password", PASSWORDS)
def test_synapse_hashes_verify(
    password: str, pepper: str, reactor_thread: Any, run_sync: Any
) -> None:
    synapse = _synapse_auth_handler(pepper, reactor_thread)
    synapse_hash = run_sync(lambda: synapse.hash(password))
    assert synapse_hash.startswith("$2b$04$")
    assert check_password(password, synapse_hash, pepper=pepper)
    assert not check_password("!" + password, synapse_hash, pepper=pepper)
    if len(password.encode() + pepper.encode()) < 72:
        assert not check_password(password, synapse_hash, pepper=pepper + "x")


@pytest.mark.parametrize("pepper", ["", "some pepper"])
@pytest.mark.parametrize("password", PASSWORDS)
def test_hearth_hashes_verify_in_synapse(
    password: str, pepper: str, reactor_thread: Any, run_sync: Any
) -> None:
    synapse = _synapse_auth_handler(pepper, reactor_thread)
    ours = hash_password(password, rounds=4, pepper=pepper)
    assert run_sync(lambda: synapse.validate_hash(password, ours)) is True
    assert run_sync(lambda: synapse.validate_hash("!" + password, ours)) is False


def test_rounds_and_normalisation() -> None:
    stored = hash_password("password", rounds=5)
    assert stored.startswith("$2b$05$")
    # NFKC: the ligature "ﬁ" and "fi" are the same password.
    assert check_password("ﬁ", hash_password("fi", rounds=4))
    # Only the first 72 bytes count (bcrypt's limit), including the pepper.
    assert check_password("a" * 72 + "different", hash_password("a" * 80, rounds=4))


def test_no_or_bad_hash_never_matches() -> None:
    assert not check_password("password", None)
    assert not check_password("password", "")
    assert not check_password("password", "not a bcrypt hash")
    assert not check_password("password", "$2b$04$tooShort")
