"""Queries between in-process Hearth servers over real TLS, on SQLite and PostgreSQL:
remote profiles (/query/profile), remote aliases (/query/directory) and remote room
directories (/publicRooms), served and used."""

from __future__ import annotations

import pytest

from federation.client import HttpResponseError
from tests.integration import federation_helpers
from tests.integration.federation_harness import (
    call,
    create_room,
    federation_get,
    federation_post,
    ok,
    q,
    register,
)
from tests.integration.federation_helpers import Federation

db_configs = federation_helpers.db_configs
federation = federation_helpers.federation

V1 = "/_matrix/federation/v1"


def test_remote_profiles(federation: Federation) -> None:
    a, b = federation.start("a"), federation.start("b")
    alice, bob = register(a, "alice"), register(b, "bob")
    ok(call(a, alice, "PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice"}))

    # Served: the whole profile, or one field (left out when unset).
    assert federation_get(b, a, f"{V1}/query/profile", {"user_id": alice.user_id}) == {
        "displayname": "Alice"
    }
    assert federation_get(
        b, a, f"{V1}/query/profile", {"user_id": alice.user_id, "field": "displayname"}
    ) == {"displayname": "Alice"}
    assert (
        federation_get(
            b, a, f"{V1}/query/profile", {"user_id": alice.user_id, "field": "avatar_url"}
        )
        == {}
    )
    with pytest.raises(HttpResponseError) as unknown:
        federation_get(b, a, f"{V1}/query/profile", {"user_id": f"@nobody:{a.server_name}"})
    assert (unknown.value.status, unknown.value.errcode) == (404, "M_NOT_FOUND")
    with pytest.raises(HttpResponseError) as elsewhere:
        federation_get(b, a, f"{V1}/query/profile", {"user_id": bob.user_id})
    assert elsewhere.value.status == 400

    # Used: bob's server asks alice's.
    assert ok(call(b, bob, "GET", f"/profile/{q(alice.user_id)}")) == {"displayname": "Alice"}
    field = ok(call(b, bob, "GET", f"/profile/{q(alice.user_id)}/displayname"))
    assert field == {"displayname": "Alice"}
    unset = call(b, bob, "GET", f"/profile/{q(alice.user_id)}/avatar_url")
    assert unset.status == 404 and unset.json()["errcode"] == "M_NOT_FOUND"
    nobody = call(b, bob, "GET", f"/profile/{q('@nobody:' + a.server_name)}")
    assert nobody.status == 404 and nobody.json()["errcode"] == "M_NOT_FOUND"
    # A server that cannot be reached: 502.
    gone = call(b, bob, "GET", f"/profile/{q('@x:127.0.0.1:1')}")
    assert gone.status == 502 and gone.json()["errcode"] == "M_UNKNOWN"


def test_remote_alias(federation: Federation) -> None:
    a, b = federation.start("a"), federation.start("b")
    alice, bob = register(a, "alice"), register(b, "bob")
    room_id = create_room(a, alice, preset="public_chat", room_alias_name="lobby")
    alias = f"#lobby:{a.server_name}"

    served = federation_get(b, a, f"{V1}/query/directory", {"room_alias": alias})
    assert served["room_id"] == room_id and a.server_name in served["servers"]
    looked_up = ok(call(b, bob, "GET", f"/directory/room/{q(alias)}"))
    assert looked_up["room_id"] == room_id and a.server_name in looked_up["servers"]
    missing = call(b, bob, "GET", f"/directory/room/{q('#nothing:' + a.server_name)}")
    assert missing.status == 404 and missing.json()["errcode"] == "M_NOT_FOUND"


def test_remote_public_rooms(federation: Federation) -> None:
    a = federation.start("a", allow_public_rooms_over_federation=True)
    b = federation.start("b")
    alice, bob = register(a, "alice"), register(b, "bob")
    rooms = {
        name: create_room(a, alice, preset="public_chat", visibility="public", name=name)
        for name in ("Gardening", "Chess", "Knitting")
    }
    create_room(a, alice, preset="private_chat", name="Hidden")

    # Served over federation, as the client list.
    served = federation_get(b, a, f"{V1}/publicRooms")
    assert {r["room_id"] for r in served["chunk"]} == set(rooms.values())
    assert served["total_room_count_estimate"] == 3
    searched = federation_post(
        b, a, f"{V1}/publicRooms", {"filter": {"generic_search_term": "chess"}}
    )
    assert [r["room_id"] for r in searched["chunk"]] == [rooms["Chess"]]

    # Used: /publicRooms?server= on bob's server, with pagination and search.
    path = f"/publicRooms?server={q(a.server_name)}"
    first = ok(call(b, bob, "GET", path + "&limit=2"))
    assert len(first["chunk"]) == 2 and "next_batch" in first
    rest = ok(call(b, bob, "GET", path + f"&limit=2&since={q(first['next_batch'])}"))
    listed = [r["room_id"] for r in first["chunk"] + rest["chunk"]]
    assert sorted(listed) == sorted(rooms.values())
    found = ok(call(b, bob, "POST", path, {"filter": {"generic_search_term": "knit"}}))
    assert [r["room_id"] for r in found["chunk"]] == [rooms["Knitting"]]
    assert found["chunk"][0]["name"] == "Knitting"

    # A server that keeps its list to itself (the default): 403, passed on.
    with pytest.raises(HttpResponseError) as closed:
        federation_get(a, b, f"{V1}/publicRooms")
    assert (closed.value.status, closed.value.errcode) == (403, "M_FORBIDDEN")
    refused = call(a, alice, "GET", f"/publicRooms?server={q(b.server_name)}")
    assert refused.status == 403 and refused.json()["errcode"] == "M_FORBIDDEN"
