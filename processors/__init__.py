"""Stream processors: each module has ``register(app, context)`` (see :mod:`streams.app`).

``PROCESSORS`` maps the name used by ``cxstream worker --processor NAME`` to its module, imported
only when a worker runs it. A dotted module path (``package.module``) names a processor outside
the map (tests use it for probe processors).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cxstream.errors import ConfigurationError

if TYPE_CHECKING:
    from streams.app import Processor

PROCESSORS: dict[str, str] = {
    "channel_counts": "processors.channel_counts",
    "reco": "processors.reco",
    "profiles": "processors.profiles",
    "sla": "processors.sla",
    "security": "processors.security",
    "kpis": "processors.kpis",
    "erasure": "processors.erasure",
}


def load_processor(name: str) -> Processor:
    module_name = PROCESSORS.get(name) or (name if "." in name else None)
    if module_name is None:
        raise ConfigurationError(
            f"unknown processor {name!r}; known: {', '.join(sorted(PROCESSORS))}"
        )
    try:
        module: Processor = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"processor {name!r}: cannot import {module_name}: {exc}") from exc
    if not callable(getattr(module, "register", None)):
        raise ConfigurationError(f"processor {name!r}: {module_name} has no register(app, context)")
    return module
