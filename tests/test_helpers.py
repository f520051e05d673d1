"""The suite's own helpers."""

from __future__ import annotations

from tests.conftest import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    # The kernel offers just-closed ports again (here 5,000 binds of port 0 gave ~4,200 distinct ports), and a
    # server given the same port for HTTP and gRPC cannot start.
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
