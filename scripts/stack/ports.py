"""Ports on 127.0.0.1: is one free, and who answers on it."""

from __future__ import annotations

import logging
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from .config import HOST
from .errors import PortInUseError

log = logging.getLogger("sparkify.stack")

# /proc/net/tcp states of sockets that own a port for good: LISTEN, and CLOSE (bound, not listening).
TCP_OWNING_STATES = {"0A", "07"}
# What servers write when the port was taken between our check and their bind.
ADDR_IN_USE_MARKERS = ("address already in use", "could not bind", "errno 98")


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something listens on (or exclusively binds) ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _tcp_states(port: int) -> list[str]:
    """States (hex, as in /proc/net/tcp) of every IPv4/IPv6 TCP socket whose local port is ``port``."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                states.append(fields[3])
    return states


def ensure_port_free(port: int, env_var: str, wait_connections: float = 90.0) -> None:
    """Raise PortInUseError unless ``127.0.0.1:port`` can be bound.

    The default ports lie in Linux's ephemeral range (32768-60999), so an *outgoing* connection of
    any program may use one as its local port, and keep it in TIME_WAIT for 60 s after closing;
    that blocks binding but goes away by itself. When only such connections hold the port we wait
    (up to ``wait_connections`` seconds); a listening or bound socket fails at once.
    """
    deadline = time.monotonic() + wait_connections
    announced = False
    while port_in_use(port):
        states = _tcp_states(port)
        transient = bool(states) and not TCP_OWNING_STATES.intersection(states)
        if transient and time.monotonic() < deadline:
            if not announced:
                log.info(
                    "port %d (%s) is only held by %d client connection(s) (e.g. TIME_WAIT); waiting for them to end",
                    port, env_var, len(states),
                )
                announced = True
            time.sleep(0.5)
            continue
        raise PortInUseError(port, env_var, HOST)


def http_answer(url: str, timeout: float = 2.0) -> bytes | None:
    """The body when ``url`` answers below 500, else None. No proxy from the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        return exc.read() if exc.code < 500 else None
    except (OSError, urllib.error.URLError):
        return None
