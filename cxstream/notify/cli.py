"""``cxstream notify serve|receiver`` (a click group the top-level CLI registers)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def notify() -> None:
    """On-call alert delivery (webhook, chat, e-mail) and the integrators' receiver."""


@notify.command()
def serve() -> None:
    """Consume alerts and security flags and deliver them to on-call until Ctrl-C/SIGTERM."""
    import logging

    from cxstream.notify.service import serve as run
    from cxstream.settings import load_settings

    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    run(settings)


@notify.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8099, show_default=True)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    help="whsec_ secret to verify with (repeatable); default: CX_NOTIFY__WEBHOOK_SECRETS",
)
@click.option("--tolerance", type=int, default=None, help="Max timestamp age in seconds.")
@click.option(
    "--jsonl",
    type=click.Path(path_type=Path),
    default=None,
    help="Append accepted deliveries here instead of printing them.",
)
def receiver(
    host: str, port: int, secrets: tuple[str, ...], tolerance: int | None, jsonl: Path | None
) -> None:
    """A local Standard Webhooks receiver: verifies, dedupes by webhook-id, prints."""
    from cxstream.notify.receiver import run_receiver
    from cxstream.settings import load_settings

    settings = load_settings()
    keys = list(secrets) or [s.get_secret_value() for s in settings.notify.webhook_secrets]
    if not keys:
        raise click.UsageError("give --secret or set CX_NOTIFY__WEBHOOK_SECRETS")
    run_receiver(
        keys,
        host,
        port,
        jsonl=jsonl,
        tolerance=tolerance or settings.notify.receiver_tolerance_seconds,
    )
