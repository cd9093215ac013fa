"""The ``hearth`` command loads the TLS stack only when first needed (``homeserver.tls``).

A server on a plain HTTP listener starts without pyOpenSSL and cryptography in memory; the
first outbound federation request loads them and is made over TLS as usual. A server with a
TLS listener loads them as it starts and serves TLS (every HearthProcess test relies on that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.interop.hearth_process import HearthProcess

pytestmark = pytest.mark.slow


def tls_stack_loaded(pid: int) -> bool:
    """pyOpenSSL is pure Python over cryptography's compiled module: that module's mapping
    shows whether either was imported."""
    with open(f"/proc/{pid}/maps") as maps:
        return any("/cryptography/" in line for line in maps)


def test_plain_http_server_loads_tls_on_its_first_federation_request(
    hearth_processes: Callable[..., HearthProcess],
) -> None:
    origin = hearth_processes("origin")  # TLS listener: the stack is loaded at start
    assert tls_stack_loaded(origin.pid)
    plain = hearth_processes("plain", tls=False)
    assert not tls_stack_loaded(plain.pid)
    own_keys = plain.request("GET", "/_matrix/key/v2/server")
    assert own_keys.status == 200, own_keys.body
    assert not tls_stack_loaded(plain.pid)

    # As a notary, the plain server fetches the origin's keys over TLS.
    result = plain.request("GET", f"/_matrix/key/v2/query/{origin.server_name}")
    assert result.status == 200, (result.body, plain.log_tail())
    server_keys: list[dict[str, Any]] = result.json()["server_keys"]
    origin_keys = origin.https("GET", "/_matrix/key/v2/server").json()
    assert [k["server_name"] for k in server_keys] == [origin.server_name]
    assert server_keys[0]["verify_keys"] == origin_keys["verify_keys"]
    assert set(server_keys[0]["signatures"]) == {origin.server_name, plain.server_name}
    assert tls_stack_loaded(plain.pid)
