"""Stream processors: each module has ``register(app, context)`` (see :mod:`streams.app`).

``PROCESSORS`` maps the name used by ``cxstream worker --processor NAME`` to its module, imported
only when a worker runs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cxstream.errors import ConfigurationError

if TYPE_CHECKING:
    from streams.app import Processor

PROCESSORS: dict[str, str] = {
    "channel_counts": "processors.channel_counts",
}


def load_processor(name: str) -> Processor:
    try:
        module_name = PROCESSORS[name]
    except KeyError as exc:
        raise ConfigurationError(
            f"unknown processor {name!r}; known: {', '.join(sorted(PROCESSORS))}"
        ) from exc
    module: Processor = importlib.import_module(module_name)
    return module
