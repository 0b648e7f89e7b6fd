"""Local stand-ins for the alert channels, configured the way production configures the real
ones: Airflow connections (and the recipients Variable) from the environment.

* ``slack_webhook``: an HTTP server answering like a Slack incoming webhook (``200 ok``); the
  fixture yields the JSON bodies it received.
* ``smtp_server``: an SMTP server (plain SMTP, no TLS) that accepts every message; the fixture
  yields the messages it received, parsed.
"""

from __future__ import annotations

import email
import email.policy
import json
import socketserver
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # the name http.server calls
        length = int(self.headers.get("Content-Length", 0))
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class _Smtp(socketserver.StreamRequestHandler):
    """The server side of RFC 5321 that smtplib's sendmail uses: EHLO/HELO, MAIL, RCPT, DATA, QUIT."""

    received: list[EmailMessage] = []

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 sparkify-test ESMTP")
        while line := self.rfile.readline():
            verb = line.decode(errors="replace").strip().split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250 sparkify-test")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                type(self).received.append(email.message_from_bytes(data, policy=email.policy.default))
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self.reply("250 ok")


def _serve(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def slack_webhook(monkeypatch):
    """The connection ``sparkify_slack`` points at a local stand-in for a Slack incoming webhook."""
    _Webhook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    _serve(server)
    url = f"http://127.0.0.1:{server.server_port}/services/T000/B000/test"
    monkeypatch.setenv("AIRFLOW_CONN_SPARKIFY_SLACK", json.dumps({"conn_type": "slackwebhook", "password": url}))
    yield _Webhook.received
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp_server(monkeypatch):
    """The connection ``sparkify_smtp`` points at a local SMTP server; alerts go to two recipients."""
    _Smtp.received = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.daemon_threads = True
    _serve(server)
    monkeypatch.setenv("AIRFLOW_CONN_SPARKIFY_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": server.server_address[1],
        "extra": {"from_email": "airflow@sparkify.test", "disable_ssl": True, "disable_tls": True,
                  "timeout": 10, "retry_limit": 0},
    }))
    monkeypatch.setenv("AIRFLOW_VAR_SPARKIFY_ALERT_EMAILS", "oncall@sparkify.test; data@sparkify.test")
    yield _Smtp.received
    server.shutdown()
    server.server_close()
