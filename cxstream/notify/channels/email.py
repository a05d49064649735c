"""E-mail over SMTP with STARTTLS (aiosmtplib).

``Message-ID`` is derived from the delivery key, so a repeat after a crash is the same message
to mail systems that dedupe on it.
"""

from __future__ import annotations

import hashlib
import ssl
from email.message import EmailMessage

import aiosmtplib

from cxstream.notify.channels import Delivery
from cxstream.notify.errors import DeliveryError
from cxstream.settings import NotifySettings

#: SMTP reply codes that a later attempt cannot fix (mailbox unknown, syntax, auth)
_PERMANENT = range(500, 600)


def build_message(delivery: Delivery, sender: str) -> EmailMessage:
    n = delivery.notification
    message = EmailMessage()
    message["From"] = sender
    message["To"] = delivery.address
    message["Subject"] = f"[cxstream {n.level}] {n.summary}"
    digest = hashlib.sha256(delivery.key.encode()).hexdigest()[:32]
    message["Message-ID"] = f"<{digest}@cxstream.notify>"
    message["X-Cxstream-Alert-Id"] = n.alert_id
    lines = [
        n.summary,
        "",
        f"level: {n.level}",
        f"department: {n.department}",
        f"subject: {n.subject_id}",
    ]
    if n.customer_pseudonym:
        lines.append(f"customer (pseudonym): {n.customer_pseudonym}")
    if n.deadline_at is not None:
        lines.append(f"deadline (epoch ms): {n.deadline_at}")
    if n.late_ms:
        lines.append(f"fired late by: {n.late_ms} ms")
    if n.link:
        lines.append(f"link: {n.link}")
    lines.extend(f"{key}: {value}" for key, value in sorted(n.details.items()))
    lines.extend(["", f"idempotency key: {delivery.key}"])
    message.set_content("\n".join(lines))
    return message


class EmailChannel:
    name = "email"

    def __init__(self, config: NotifySettings) -> None:
        self._config = config
        self._tls: ssl.SSLContext | None = None
        if config.smtp_starttls:
            self._tls = ssl.create_default_context(
                cafile=str(config.smtp_ca_file) if config.smtp_ca_file else None
            )

    async def send(self, delivery: Delivery) -> None:
        config = self._config
        message = build_message(delivery, config.smtp_from)
        step = f"notify.email to {delivery.recipient} via {config.smtp_host}:{config.smtp_port}"
        try:
            await aiosmtplib.send(
                message,
                hostname=config.smtp_host,
                port=config.smtp_port,
                username=config.smtp_user,
                password=(
                    config.smtp_password.get_secret_value() if config.smtp_password else None
                ),
                start_tls=config.smtp_starttls,
                use_tls=False,
                tls_context=self._tls,
                timeout=config.timeout_seconds,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{step}: server answered {exc.code} {exc.message}",
                retryable=exc.code not in _PERMANENT,
                status=exc.code,
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"{step}: {exc!r}", retryable=True) from exc
