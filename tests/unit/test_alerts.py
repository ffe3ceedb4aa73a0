"""Alerts reach a real local webhook and a real (minimal) SMTP server; a dead channel
is reported, never raised, and never shows the webhook URL (it may hold a token)."""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from helpers import free_port
from saleslake import api


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "type": self.headers["Content-Type"], "json": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/t0ken-123", received
    server.shutdown()


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib.send_message: one message per session."""

    messages: ClassVar[list[dict]] = []

    def reply(self, text: str) -> None:
        self.wfile.write(f"{text}\r\n".encode())

    def handle(self):
        self.reply("220 test ESMTP")
        envelope: dict = {"to": []}
        while raw := self.rfile.readline():
            command = raw.decode().strip()
            verb = command.split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 test")
            elif verb == "MAIL":
                envelope["from"] = command.split(":", 1)[1].strip("<> ")
                self.reply("250 ok")
            elif verb == "RCPT":
                envelope["to"].append(command.split(":", 1)[1].strip("<> "))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go on")
                lines = []
                while (data := self.rfile.readline().decode()) not in (".\r\n", ""):
                    lines.append(data)
                envelope["data"] = "".join(lines)
                SmtpHandler.messages.append(envelope)
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


@pytest.fixture
def smtp():
    SmtpHandler.messages = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SmtpHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], SmtpHandler.messages
    server.shutdown()
    server.server_close()


def test_log_only_by_default(settings, caplog):
    with caplog.at_level(logging.WARNING, logger="saleslake.alerts"):
        done = api.alert("saleslake_batch failed", "task land_csv: bad file", settings=settings)
    assert [(d.channel, d.ok) for d in done] == [("log", True)]
    assert "ALERT saleslake_batch failed: task land_csv: bad file" in caplog.text


def test_webhook_and_email(settings, webhook, smtp):
    url, received = webhook
    port, mails = smtp
    s = settings.model_copy(
        update={
            "alerts": settings.alerts.model_copy(
                update={
                    "webhook_url": url,
                    "smtp_host": "127.0.0.1",
                    "smtp_port": port,
                    "smtp_starttls": False,
                    "mail_to": ["data-team@example.com", "oncall@example.com"],
                }
            )
        }
    )
    done = api.alert("stale source", "csv:eu is 30 h old", severity="warning", details={"age_hours": 30}, settings=s)
    assert [(d.channel, d.ok) for d in done] == [("log", True), ("webhook", True), ("email", True)]
    (hook,) = received
    assert hook["path"] == "/hooks/t0ken-123" and hook["type"] == "application/json"
    assert hook["json"] == {
        "title": "stale source",
        "text": "csv:eu is 30 h old",
        "severity": "warning",
        "details": {"age_hours": 30},
    }
    (mail,) = mails
    assert mail["from"] == "saleslake@localhost" and mail["to"] == ["data-team@example.com", "oncall@example.com"]
    assert "Subject: [saleslake warning] stale source" in mail["data"] and '"age_hours": 30' in mail["data"]


def test_webhook_from_secret_file(settings, webhook, tmp_path, monkeypatch):
    url, received = webhook
    secret = tmp_path / "hook-url"
    secret.write_text(url + "\n")
    monkeypatch.setenv("SALESLAKE_ALERT_WEBHOOK_URL_FILE", str(secret))
    done = api.alert("x", settings=settings)
    assert done[-1].channel == "webhook" and done[-1].ok and len(received) == 1


def test_dead_channels_are_reported_not_raised(settings, caplog):
    dead = free_port()
    s = settings.model_copy(
        update={
            "alerts": settings.alerts.model_copy(
                update={
                    "webhook_url": f"http://127.0.0.1:{dead}/hooks/t0ken-123",
                    "smtp_host": "127.0.0.1",
                    "smtp_port": dead,
                    "mail_to": ["a@example.com"],
                }
            )
        }
    )
    with caplog.at_level(logging.ERROR, logger="saleslake.alerts"):
        done = api.alert("gold failed", settings=s)
    assert [(d.channel, d.ok) for d in done] == [("log", True), ("webhook", False), ("email", False)]
    assert "refused" in done[1].error.lower() and "ConnectionRefusedError" in done[2].error
    assert "t0ken-123" not in caplog.text and all("t0ken-123" not in (d.error or "") for d in done)
