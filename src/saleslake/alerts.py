"""Alerts: always logged (logger ``saleslake.alerts``), and sent to a webhook (JSON POST)
and by e-mail when configured (``[alerts]`` settings). Used by the Airflow failure
callbacks and by the monitor; a channel that fails is reported, never raised, so an
alert never hides the failure it reports.

    from saleslake.alerts import Alert, send_alert
    send_alert(Alert("saleslake_batch failed", "task land_csv: ..."), settings)
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage

from saleslake.config import Settings, read_secret

log = logging.getLogger("saleslake.alerts")


@dataclass
class Alert:
    title: str
    text: str = ""
    severity: str = "error"  # error | warning
    details: dict = field(default_factory=dict)


@dataclass
class Delivery:
    channel: str  # log | webhook | email
    ok: bool
    error: str | None = None


def send_alert(alert: Alert, settings: Settings) -> list[Delivery]:
    """Log ``alert`` and send it to every configured channel; returns one Delivery each."""
    level = logging.WARNING if alert.severity == "warning" else logging.ERROR
    log.log(level, "ALERT %s: %s", alert.title, alert.text)
    done = [Delivery("log", True)]
    url = settings.alerts.webhook()
    if url:
        done.append(_send_webhook(alert, url, settings))
    if settings.alerts.smtp_host and settings.alerts.mail_to:
        done.append(_send_email(alert, settings.alerts.smtp_host, settings))
    for d in done:
        if not d.ok:
            log.error("alert channel %s failed: %s", d.channel, d.error)
    return done


def _send_webhook(alert: Alert, url: str, settings: Settings) -> Delivery:
    body = json.dumps(asdict(alert), default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=settings.alerts.webhook_timeout_seconds) as response:
            response.read()
        return Delivery("webhook", True)
    except urllib.error.HTTPError as exc:
        return Delivery("webhook", False, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        # the URL may hold a token: report the reason, never the URL
        reason = getattr(exc, "reason", exc)
        return Delivery("webhook", False, f"not reachable ({reason})")


def _send_email(alert: Alert, smtp_host: str, settings: Settings) -> Delivery:
    a = settings.alerts
    message = EmailMessage()
    message["Subject"] = f"[saleslake {alert.severity}] {alert.title}"
    message["From"] = a.mail_from
    message["To"] = ", ".join(a.mail_to)
    details = json.dumps(alert.details, indent=2, default=str) if alert.details else ""
    message.set_content(f"{alert.text}\n\n{details}".strip() + "\n")
    try:
        with smtplib.SMTP(smtp_host, a.smtp_port, timeout=30) as smtp:
            if a.smtp_starttls:
                smtp.starttls()
            password = read_secret("SALESLAKE_SMTP_PASSWORD")
            if a.smtp_user and password:
                smtp.login(a.smtp_user, password)
            smtp.send_message(message)
        return Delivery("email", True)
    except (smtplib.SMTPException, OSError) as exc:
        return Delivery("email", False, f"{type(exc).__name__}: {exc}".splitlines()[0])
