"""Anomalous-access detection for customers and staff (issue 6).

``register(app, context)`` (:mod:`processors.security.processor`) attaches the detectors to a
worker; :class:`processors.security.engine.SecurityEngine` is the Kafka-free detection step;
``rules/`` holds one module per rule, :mod:`~processors.security.flags` turns findings into
``security_flag`` records.
"""

from __future__ import annotations

from processors.security.processor import register

__all__ = ["register"]
