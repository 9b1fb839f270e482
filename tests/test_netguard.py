"""The guard that keeps every test on 127.0.0.1, in this process and in the processes tests start."""

import socket
import subprocess
import sys

import pytest
from conftest import _guard_lines


@pytest.mark.expects_blocked_network
def test_connection_beyond_loopback_is_refused_and_recorded():
    before = len(_guard_lines())
    with pytest.raises(ConnectionRefusedError, match="network guard"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with socket.socket() as raw, pytest.raises(ConnectionRefusedError, match="network guard"):
        raw.connect(("192.0.2.1", 443))
    attempts = "".join(_guard_lines()[before:])
    assert "name lookup of 192.0.2.1" in attempts and "192.0.2.1:443" in attempts


@pytest.mark.expects_blocked_network
def test_name_lookup_in_a_subprocess_is_refused_and_recorded():
    before = len(_guard_lines())
    code = "import urllib.request; urllib.request.urlopen('https://storage.googleapis.com', timeout=2)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "network guard" in result.stderr
    assert "storage.googleapis.com" in "".join(_guard_lines()[before:])


def test_loopback_is_allowed():
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname(), timeout=1):
        pass
