"""Delivery through real servers: a local aiohttp receiver and an aiosmtpd SMTP server with
STARTTLS (certificate made here). Retries on 500s, dead-letter + fallback, e-mail, chat."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cxstream.errors import CxStreamError
from cxstream.notify.channels import Delivery
from cxstream.notify.channels.chat import ChatChannel
from cxstream.notify.channels.email import EmailChannel
from cxstream.notify.channels.webhook import WebhookChannel
from cxstream.notify.delivery_log import DeliveryLog
from cxstream.notify.notification import Notification
from cxstream.notify.receiver import Received, receiver_app
from cxstream.notify.retry import RetryPolicy
from cxstream.notify.service import Notifier
from cxstream.settings import (
    NotifyContactSettings,
    NotifyMemberSettings,
    NotifyRotationSettings,
    NotifyRouteSettings,
    NotifySettings,
)
from tests.support.services import free_port

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
FAST = RetryPolicy(max_attempts=4, initial_seconds=0.01, max_seconds=0.05)


def make_cert(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cxstream test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Mailbox:
    """aiosmtpd handler: keeps every message and whether the session used TLS."""

    def __init__(self) -> None:
        self.messages: list[tuple[bool, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((session.ssl is not None, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[Mailbox, int, Path]]:
    ca, cert, key = make_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox, port = Mailbox(), free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    try:
        yield mailbox, port, ca
    finally:
        controller.stop()


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def config(
    members: list[NotifyMemberSettings],
    channels: list[str],
    fallback: NotifyContactSettings | None = None,
    **smtp: Any,
) -> NotifySettings:
    return NotifySettings(
        rotations=[
            NotifyRotationSettings(name="it", members=members, channels=channels, fallback=fallback)
        ],
        routes=[NotifyRouteSettings(department="it", rotation="it")],
        webhook_secrets=[SECRET],
        **smtp,
    )


def alert(alert_id: str) -> Notification:
    return Notification(
        alert_id, "pipeline", "critical", "it", "sink", 1_765_000_000_000, "sink lag above 5 min"
    )


DeadList = list[tuple[Delivery, CxStreamError]]


def collector() -> tuple[DeadList, Callable[[Delivery, CxStreamError], Any]]:
    dead: DeadList = []

    async def on_dead(delivery: Delivery, error: CxStreamError) -> None:
        dead.append((delivery, error))

    return dead, on_dead


async def test_webhook_retries_500s_then_delivers_once(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    received = Received()
    fail_twice = lambda _id, attempt: 500 if attempt <= 2 else 200  # noqa: E731
    runner, url = await serve(receiver_app([SECRET], received=received, status_for=fail_twice))
    try:
        cfg = config([NotifyMemberSettings(name="ivan", webhook_url=url + "/hook")], ["webhook"])
        log = DeliveryLog(tmp_path / "log.sqlite")
        notifier = Notifier(cfg, log, {"webhook": WebhookChannel(http, [SECRET])}, policy=FAST)
        dead, on_dead = collector()
        await notifier.deliver(alert("a-1"), on_dead)
        await notifier.deliver(alert("a-1"), on_dead)  # a replay: already delivered, not sent
    finally:
        await runner.cleanup()
    assert dead == []
    assert received.alert_ids() == ["a-1"]
    assert received.requests == 3  # two 500s, one success, nothing for the replay
    assert [(a, ok, s) for _k, a, ok, s in log.attempts("a-1")] == [
        (1, False, 500),
        (2, False, 500),
        (3, True, None),
    ]
    assert log.state("a-1/ivan/webhook") == "delivered"


async def test_after_last_attempt_dead_letter_then_fallback_email_over_starttls(
    tmp_path: Path, http: aiohttp.ClientSession, smtp: tuple[Mailbox, int, Path]
) -> None:
    mailbox, port, ca = smtp
    always_500 = lambda _id, _attempt: 503  # noqa: E731
    received = Received()
    runner, url = await serve(receiver_app([SECRET], received=received, status_for=always_500))
    try:
        cfg = config(
            [NotifyMemberSettings(name="ivan", webhook_url=url + "/hook")],
            ["webhook"],
            fallback=NotifyContactSettings(channel="email", address="it-oncall@bank.example"),
            smtp_port=port,
            smtp_ca_file=ca,
        )
        log = DeliveryLog(tmp_path / "log.sqlite")
        channels = {"webhook": WebhookChannel(http, [SECRET]), "email": EmailChannel(cfg)}
        notifier = Notifier(cfg, log, channels, policy=FAST)
        dead, on_dead = collector()
        await notifier.deliver(alert("a-2"), on_dead)
    finally:
        await runner.cleanup()
    assert received.by_id == {}
    assert received.requests == FAST.max_attempts
    assert [d.key for d, _ in dead] == ["a-2/ivan/webhook"]
    assert "503" in str(dead[0][1])
    assert len(mailbox.messages) == 1
    tls, message = mailbox.messages[0]
    assert tls, "the e-mail was not sent inside STARTTLS"
    assert message["To"] == "it-oncall@bank.example"
    assert message["X-Cxstream-Alert-Id"] == "a-2"
    assert "sink lag above 5 min" in message["Subject"]
    assert log.states("a-2") == {"a-2/ivan/webhook": "dead", "a-2/it.fallback/email": "delivered"}


async def test_email_refused_without_trusting_the_servers_ca(
    tmp_path: Path, smtp: tuple[Mailbox, int, Path]
) -> None:
    mailbox, port, _ca = smtp
    cfg = config(
        [NotifyMemberSettings(name="ivan", email="ivan@bank.example")], ["email"], smtp_port=port
    )
    notifier = Notifier(
        cfg,
        DeliveryLog(tmp_path / "l.sqlite"),
        {"email": EmailChannel(cfg)},
        policy=RetryPolicy(max_attempts=1),
    )
    dead, on_dead = collector()
    await notifier.deliver(alert("a-3"), on_dead)
    assert mailbox.messages == []
    assert len(dead) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in str(dead[0][1])


async def test_chat_payload_is_an_incoming_webhook_message(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    bodies: list[dict[str, Any]] = []

    async def incoming(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/services/T0/B0/x", incoming)
    runner, url = await serve(app)
    try:
        cfg = config(
            [NotifyMemberSettings(name="ivan", chat_url=url + "/services/T0/B0/x")], ["chat"]
        )
        notifier = Notifier(
            cfg, DeliveryLog(tmp_path / "l.sqlite"), {"chat": ChatChannel(http)}, policy=FAST
        )
        dead, on_dead = collector()
        await notifier.deliver(alert("a-4"), on_dead)
    finally:
        await runner.cleanup()
    assert dead == []
    assert len(bodies) == 1
    assert "sink lag above 5 min" in bodies[0]["text"]
    assert bodies[0]["blocks"][0]["type"] == "section"
    assert "a-4/ivan/chat" in bodies[0]["blocks"][1]["elements"][0]["text"]
