"""The multipart/mixed framing of the federation media endpoints (spec v1.11), read and
written: bytes kept exactly, Synapse's framing (a leading CRLF) understood."""

from __future__ import annotations

import io

import pytest

from federation.media import (
    MultipartError,
    MultipartFile,
    boundary_of,
    multipart_framing,
    parse_multipart,
    upload_name_of,
)


def test_synapse_style_body_parses() -> None:
    body = (
        b"\r\n--abc\r\nContent-Type: application/json\r\n\r\n{}"
        b"\r\n--abc\r\nContent-Type: image/png\r\n"
        b"Content-Disposition: inline; filename=a.png\r\n\r\n"
        b"\x89PNG\r\n--ab\r\n"
        b"\r\n--abc--\r\n"
    )
    parts = parse_multipart(body, boundary_of("multipart/mixed; boundary=abc"))
    assert [p.headers for p in parts] == [
        {"content-type": "application/json"},
        {"content-type": "image/png", "content-disposition": "inline; filename=a.png"},
    ]
    assert parts[0].content == b"{}"
    assert parts[1].content == b"\x89PNG\r\n--ab\r\n"


def test_our_framing_round_trips_through_the_parser() -> None:
    data = bytes(range(256)) * 10
    head, tail = multipart_framing("b0undary", {"Content-Type": "application/octet-stream"})
    stream = MultipartFile(head, io.BytesIO(data), tail)
    body = b"".join(iter(lambda: stream.read(7), b""))
    assert len(body) == len(head) + len(data) + len(tail)
    parts = parse_multipart(body, b"b0undary")
    assert parts[0].content == b"{}"
    assert parts[1].content == data


def test_part_without_headers_and_quoted_boundary() -> None:
    body = b"--q\r\n\r\n{}\r\n--q\r\n\r\nraw\r\n--q--"
    parts = parse_multipart(body, boundary_of('multipart/mixed; boundary="q"'))
    assert [p.content for p in parts] == [b"{}", b"raw"]
    assert parts[1].headers == {}


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary at all",
        b"--q\r\nContent-Type: x\r\n\r\nunterminated",
        b"--q\r\nbad header\r\n\r\nx\r\n--q--",
    ],
)
def test_malformed_bodies_are_errors(body: bytes) -> None:
    with pytest.raises(MultipartError):
        parse_multipart(body, b"q")


@pytest.mark.parametrize(
    "content_type", ["application/json", "multipart/mixed", "multipart/form-data; boundary=x"]
)
def test_content_type_must_be_multipart_mixed_with_a_boundary(content_type: str) -> None:
    with pytest.raises(MultipartError):
        boundary_of(content_type)


def test_upload_names() -> None:
    assert upload_name_of("attachment; filename=a.bin") == "a.bin"
    assert upload_name_of("inline; filename*=utf-8''caf%C3%A9.png") == "café.png"
    assert upload_name_of('attachment; filename="q.txt"') == "q.txt"
    assert upload_name_of("attachment") is None
    assert upload_name_of(None) is None
