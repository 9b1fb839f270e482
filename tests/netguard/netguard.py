"""Refuses every connection and name lookup beyond the loopback interface, and records the attempt.

Loaded into the test process by conftest.py and into every Python subprocess it starts (kfp.local's
task processes included) through ``sitecustomize``, so a test cannot reach the internet by accident,
even where the code under test swallows the error: conftest fails the test from the record.
"""

import ipaddress
import os
import socket

LOG_ENV = "YOLO_KFP_NETGUARD_LOG"
# Cluster names a test serves on 127.0.0.1 (a stand-in's *.svc name), separated by commas: they resolve there.
LOOPBACK_HOSTS_ENV = "YOLO_KFP_LOOPBACK_HOSTS"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _str(host) -> str:
    return host.decode() if isinstance(host, bytes) else str(host)


def _is_loopback(host) -> bool:
    if host is None:
        return True  # getaddrinfo(None, port): the local host
    host = _str(host)
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refuse(what: str):
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"pid {os.getpid()}: {what}\n")
    raise ConnectionRefusedError(f"network guard: tests may only reach 127.0.0.1, not {what}")


def install() -> None:
    if getattr(socket, "_yolo_kfp_guarded", False):
        return
    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            _refuse(f"{address[0]}:{address[1]}")

    def connect(sock, address):
        _check(sock, address)
        return original_connect(sock, address)

    def connect_ex(sock, address):
        _check(sock, address)
        return original_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, (str, bytes)) and _str(host) in os.environ.get(LOOPBACK_HOSTS_ENV, "").split(","):
            host = "127.0.0.1"
        if not _is_loopback(host):
            _refuse(f"name lookup of {host}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    socket._yolo_kfp_guarded = True
