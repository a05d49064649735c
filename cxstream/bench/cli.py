"""``cxstream bench NAME``: run one benchmark, print its figures, write bench-results/NAME.json."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

import click

from cxstream.bench.machine import describe_machine
from cxstream.settings import PROJECT_ROOT, load_settings

BENCHMARKS = (
    "produce",
    "codec",
    "sink",
    "profiles",
    "api",
    "sla",
    "security",
    "reco",
    "pipeline",
    "simulate",
    "stack",
    "boards",
)


def _parse_option(raw: str) -> tuple[str, Any]:
    if "=" not in raw:
        raise click.BadParameter(f"expected KEY=VALUE, got {raw!r}", param_hint="--opt")
    key, value = raw.split("=", 1)
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    elif isinstance(value, float):
        rows.append((prefix, f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"))
    else:
        rows.append((prefix, str(value)))


@click.command()
@click.argument("name", type=click.Choice(BENCHMARKS))
@click.option("--opt", "options", multiple=True, help="Benchmark option KEY=VALUE (repeatable).")
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path),
    default=PROJECT_ROOT / "bench-results",
    show_default=True,
)
def bench(name: str, options: tuple[str, ...], out_dir: Path) -> None:
    """Run benchmark NAME and write its figures to OUT_DIR/NAME.json."""
    from rich.console import Console
    from rich.table import Table

    try:
        module = importlib.import_module(f"cxstream.bench.{name}")
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"benchmark {name!r} is not implemented yet") from exc
    settings = load_settings()
    kwargs = dict(_parse_option(o) for o in options)
    started = time.time()
    figures: dict[str, Any] = module.run(settings, **kwargs)
    result = {
        "benchmark": name,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": describe_machine(),
        "options": kwargs,
        **figures,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")

    table = Table(title=f"cxstream bench {name}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = []
    _flatten("", {k: v for k, v in result.items() if k != "machine"}, rows)
    for key, value in rows:
        table.add_row(key, value)
    console = Console()
    console.print(table)
    console.print(f"machine: {result['machine']['cpu_model']} x{result['machine']['cpu_count']}")
    console.print(f"written: {path}")
