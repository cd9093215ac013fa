"""Server ACLs against the spec's rules (Client-Server API, "Server Access Control Lists
(ACLs) for rooms") and its example event."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.auth.server_acl import ServerAcl, glob_to_regex, host_of, server_allowed

# The spec's example content.
SPEC_EXAMPLE: dict[str, Any] = {
    "allow_ip_literals": False,
    "allow": ["*"],
    "deny": ["*.evil.com", "evil.com"],
}


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ("good.org", True),
        ("matrix.good.org:8448", True),
        ("evil.com", False),
        ("evil.com:8448", False),
        ("evil.com:1234", False),
        ("sub.evil.com", False),
        ("deep.sub.evil.com:443", False),
        ("EVIL.COM", False),  # globs ignore case
        ("notevil.com", True),  # "*.evil.com" needs the dot
        ("evil.com.good.org", True),
        ("1.2.3.4", False),
        ("1.2.3.4:8448", False),
        ("[::1]", False),
        ("[2001:db8::1]:8448", False),
    ],
)
def test_spec_example(server: str, allowed: bool) -> None:
    assert server_allowed(SPEC_EXAMPLE, server) is allowed


def test_no_acl_event_allows_everyone() -> None:
    assert server_allowed(None, "evil.com")
    assert server_allowed(None, "1.2.3.4")


def test_missing_allow_denies_every_server() -> None:
    # The spec's warning: no allow rule shuts out everyone, the sender included.
    assert not server_allowed({}, "good.org")
    assert not server_allowed({"deny": []}, "good.org")
    assert not server_allowed({"allow": []}, "good.org")


def test_deny_wins_over_allow() -> None:
    content = {"allow": ["evil.com", "*"], "deny": ["evil.com"]}
    assert not server_allowed(content, "evil.com")
    assert server_allowed(content, "good.org")


def test_allow_list_restricts_to_its_servers() -> None:
    content = {"allow": ["*.example.org", "example.org"]}
    assert server_allowed(content, "example.org:8448")
    assert server_allowed(content, "matrix.example.org")
    assert not server_allowed(content, "example.com")


def test_ip_literals_allowed_by_default_and_matched_as_hosts() -> None:
    assert server_allowed({"allow": ["*"]}, "1.2.3.4")
    assert server_allowed({"allow": ["*"], "allow_ip_literals": True}, "[::1]:8448")
    assert server_allowed({"allow": ["1.2.3.*"]}, "1.2.3.4:8448")
    assert not server_allowed({"allow": ["1.2.3.*"]}, "1.2.4.4")
    assert not server_allowed({"allow": ["*"], "deny": ["127.0.0.1"]}, "127.0.0.1:1234")
    assert server_allowed({"allow": ["[::1]"]}, "[::1]:8448")


def test_non_boolean_allow_ip_literals_counts_as_true() -> None:
    values: list[Any] = ["false", 0, None, [], {}]
    for value in values:
        assert server_allowed({"allow": ["*"], "allow_ip_literals": value}, "1.2.3.4")


def test_names_that_only_look_numeric_are_not_ip_literals() -> None:
    content = {"allow": ["*"], "allow_ip_literals": False}
    assert server_allowed(content, "1.2.3.4.example.org")
    assert server_allowed(content, "1.2.3")
    assert server_allowed(content, "256.1.1.1")


def test_bad_lists_and_entries_are_ignored() -> None:
    assert not server_allowed({"allow": "*"}, "good.org")  # not a list: empty
    assert server_allowed({"allow": ["*"], "deny": "evil.com"}, "evil.com")
    assert server_allowed({"allow": [1, None, {"a": 1}, "good.org"]}, "good.org")
    assert not server_allowed({"allow": ["*"], "deny": [7, "evil.com"]}, "evil.com")


@pytest.mark.parametrize(
    ("glob", "value", "matches"),
    [
        ("*", "", True),
        ("*", "anything.at.all", True),
        ("?", "a", True),
        ("?", "", False),
        ("?", "ab", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a*c", "ac", True),
        ("a*c", "abbbc", True),
        ("a*c", "abbbcd", False),
        ("evil.com", "evilxcom", False),  # a dot is literal
        ("ev[il].com", "ev[il].com", True),  # so are regex brackets
        ("ev[il].com", "evi.com", False),
        ("a+b", "aab", False),
        ("a+b", "a+b", True),
        ("EviL.*", "evil.COM", True),
    ],
)
def test_glob(glob: str, value: str, matches: bool) -> None:
    assert (glob_to_regex(glob).fullmatch(value) is not None) is matches


@pytest.mark.parametrize(
    ("server", "host"),
    [
        ("evil.com", "evil.com"),
        ("evil.com:8448", "evil.com"),
        ("1.2.3.4:80", "1.2.3.4"),
        ("[::1]", "[::1]"),
        ("[::1]:8448", "[::1]"),
        ("[2001:db8::1]:8448", "[2001:db8::1]"),
    ],
)
def test_port_is_left_out(server: str, host: str) -> None:
    assert host_of(server) == host


def test_evaluator_is_reusable() -> None:
    acl = ServerAcl.from_content(SPEC_EXAMPLE)
    assert acl.allows("good.org")
    assert not acl.allows("evil.com")
    assert acl.allows("good.org")
