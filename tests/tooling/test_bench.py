"""The benchmark's own parts: figures against targets, and the latency proxy of section 2b (which
stands in for S3's round trip in front of moto, so concurrent fetching shows what it gains)."""

from __future__ import annotations

import http.client
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.stats import Figure, summary
from support import REPO

DELAY = 0.25
CONCURRENT = 6


@pytest.mark.parametrize(
    ("value", "target", "status"),
    [(1.5, "<= 1.5", "PASS"), (1.51, "<= 1.5", "MISS"), (6.0, ">= 6", "PASS"), (5.99, ">= 6", "MISS")],
)
def test_a_figure_passes_its_target_inclusively(value: float, target: str, status: str) -> None:
    assert Figure("s", "ratio", value, "x", target=target).status == status


def test_summary_is_median_min_max() -> None:
    assert summary([3.0, 1.0, 2.0, 10.0]) | {"values": None} == {
        "median": 2.5, "min": 1.0, "max": 10.0, "n": 4, "values": None,
    }


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3 uses
    # Requests for /together/... answer only once CONCURRENT of them have arrived here at the same
    # time: through a proxy that handled one connection at a time the barrier would never fill.
    # The timeout only stops a hang; it is no bound on speed.
    together = threading.Barrier(CONCURRENT, timeout=60)

    def do_GET(self) -> None:
        if self.path.startswith("/together/"):
            self.together.wait()
        body = f"you asked for {self.path}".encode() * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def proxy_port():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.latency_proxy", "--target", f"127.0.0.1:{server.server_port}",
         "--delay-ms", str(DELAY * 1000)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.shutdown()


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[bytes, float]:
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.monotonic()
    conn.request("GET", path)
    body = conn.getresponse().read()
    return body, time.monotonic() - started


def test_every_request_on_a_connection_waits_and_arrives_whole(proxy_port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=30)
    for number in range(3):
        body, seconds = get(proxy_port, f"/key/{number}", conn)
        assert body == f"you asked for /key/{number}".encode() * 1000
        assert seconds >= DELAY


def test_concurrent_requests_are_in_flight_together(proxy_port: int) -> None:
    # Each request is held by the server until all of them have reached it (Echo.together), so
    # they only complete if the proxy delays and forwards them side by side.
    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(lambda number: get(proxy_port, f"/together/{number}"), range(CONCURRENT)))
    assert [body for body, _ in results] == [f"you asked for /together/{n}".encode() * 1000 for n in range(CONCURRENT)]
    assert all(seconds >= DELAY for _, seconds in results)
    assert not Echo.together.broken
