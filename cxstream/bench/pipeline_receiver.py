"""The on-call receiver of ``cxstream bench pipeline``: the notify receiver, plus arrival times.

``python -m cxstream.bench.pipeline_receiver --port P --secret S --jsonl FILE`` serves
:func:`cxstream.notify.receiver.receiver_app` (verifies signatures, dedupes by webhook-id) and
writes each accepted delivery as a JSON line with ``received_at_ms`` (wall clock when the
receiver accepted it), which ``cxstream notify receiver`` does not record.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TextIO


class StampedLines:
    """A text sink for the receiver that adds the arrival time to every JSON line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, line: str) -> int:
        at = int(time.time() * 1000)
        text = line.strip()
        if not text:
            return 0
        record = json.loads(text)
        record["received_at_ms"] = at
        return self.out.write(json.dumps(record, sort_keys=True) + "\n")

    def flush(self) -> None:
        self.out.flush()


def main(argv: list[str] | None = None) -> None:
    from aiohttp import web

    from cxstream.notify.receiver import receiver_app

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--jsonl", required=True)
    args = parser.parse_args(argv)
    with open(args.jsonl, "a", encoding="utf-8") as out:
        app = receiver_app([args.secret], out=StampedLines(out))  # type: ignore[arg-type]
        web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
