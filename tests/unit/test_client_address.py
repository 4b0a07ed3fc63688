"""Which address is the client's (issue 20): X-Forwarded-For counts only through trusted
proxies. The --workers supervisor uses it to name the client to the alerts process."""

from __future__ import annotations

import pytest

from ingest.http import client_address

PROXY = ["10.0.0.5", "127.0.0.1"]


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "want"),
    [
        # No trusted proxies: the header is the client's own claim, ignored.
        ("127.0.0.1", "203.0.113.9", [], "127.0.0.1"),
        ("198.51.100.7", "203.0.113.9", [], "198.51.100.7"),
        # From a trusted proxy: the right-most address that is not one of ours.
        ("10.0.0.5", "203.0.113.9", PROXY, "203.0.113.9"),
        ("10.0.0.5", "1.2.3.4, 203.0.113.9", PROXY, "203.0.113.9"),
        ("10.0.0.5", "1.2.3.4, 203.0.113.9, 127.0.0.1", PROXY, "203.0.113.9"),
        # A client that is not a trusted proxy cannot choose its address.
        ("198.51.100.7", "203.0.113.9", PROXY, "198.51.100.7"),
        # Networks, and a trusted peer with no header.
        ("10.0.0.77", "203.0.113.9", ["10.0.0.0/24"], "203.0.113.9"),
        ("10.0.0.5", None, PROXY, "10.0.0.5"),
        ("10.0.0.5", "garbage", PROXY, "garbage"),
    ],
)
def test_client_address(peer: str, xff: str | None, trusted: list[str], want: str) -> None:
    assert client_address(peer, xff, trusted) == want
