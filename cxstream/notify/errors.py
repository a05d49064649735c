"""Errors of the notifier."""

from __future__ import annotations

from cxstream.errors import CxStreamError, ServiceError


class DeliveryError(ServiceError):
    """One delivery attempt failed; ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class RoutingError(CxStreamError):
    """No route or rotation for an alert (a configuration gap)."""


class WebhookVerificationError(CxStreamError):
    """A webhook request is not authentic: missing headers, bad signature, stale timestamp."""
