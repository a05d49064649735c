"""The HTTP API frontends use: event ingest, profile and recommendation lookups, health, metrics.

``create_api(settings)`` (:mod:`cxstream.api.app`) builds the aiohttp application; ``cxstream
api`` (:mod:`cxstream.api.cli`) serves it. The OpenAPI document is at ``GET /openapi.json``.
"""

from __future__ import annotations

from cxstream.api.app import create_api

__all__ = ["create_api"]
