"""Stream and topological tokens: Synapse's formats, parsed strictly."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.streams import RoomStreamToken, StreamToken, TokenError, parse_room_token


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("s0", RoomStreamToken(None, 0)),
        ("s72", RoomStreamToken(None, 72)),
        ("t5-72", RoomStreamToken(5, 72)),
        ("t5--1", RoomStreamToken(5, -1)),
        ("t0-0", RoomStreamToken(0, 0)),
    ],
)
def test_room_tokens_round_trip(text: str, token: RoomStreamToken) -> None:
    assert RoomStreamToken.parse(text) == token
    assert token.to_string() == text
    assert StreamToken.parse(text).room_key == token
    assert StreamToken(token).to_string() == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "s",
        "t",
        "t5",
        "t5-",
        "x5",
        "s5x",
        "S5",
        "t5_6",
        "s 5",
        "s1.5",
        "s" + "9" * 20,
        "s1_2_3_4_5_6_7_8_9",
        "s1__2",
        "s1_-2",
    ],
)
def test_bad_tokens(text: str) -> None:
    with pytest.raises(TokenError):
        StreamToken.parse(text)
    with pytest.raises(MatrixError) as e:
        parse_room_token(text, "from")
    assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM")


def test_topological_position_orders_by_depth_then_stream() -> None:
    assert RoomStreamToken(3, 10).position < RoomStreamToken(4, 1).position
    assert RoomStreamToken(3, 10).position < RoomStreamToken(3, 11).position
    with pytest.raises(AssertionError):
        _ = RoomStreamToken(None, 3).position


def test_further_streams_extend_the_token() -> None:
    class WithTyping(StreamToken):
        EXTRA_STREAMS = ("typing", "receipts")

    token = WithTyping.parse("s10_4_7")
    assert token.room_key == RoomStreamToken(None, 10)
    assert token.extra == (("typing", 4), ("receipts", 7))
    assert token.to_string() == "s10_4_7"
    # Tokens minted before a stream existed read its position as 0.
    assert WithTyping.parse("s10").extra == (("typing", 0), ("receipts", 0))
    for bad in ("s10_4_7_1", "s10_x", "s10_-1", "s10__1"):
        with pytest.raises(TokenError):
            WithTyping.parse(bad)


def test_older_tokens_with_fewer_streams_read_missing_parts_as_zero() -> None:
    token = StreamToken.parse("s7_3")
    assert token.room_key == RoomStreamToken(None, 7)
    assert dict(token.extra) == {
        name: (3 if name == "typing" else 0) for name in StreamToken.EXTRA_STREAMS
    }
    assert StreamToken.parse(token.to_string()) == token
