"""The ``cxstream`` command line.

Subcommands are loaded lazily from the modules that own them, so ``cxstream --help`` stays fast
and no subcommand's imports (Faust, chdb, ...) run unless that subcommand is used.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from cxstream.errors import CxStreamError

# name -> ("module:attribute" of a click command or group, one-line help shown by --help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("cxstream.stack.cli:stack", "Start, stop or check the native local services."),
    "worker": ("streams.cli:worker", "Run a Faust stream worker."),
    "simulate": ("cxstream.simulate.cli:simulate", "Publish synthetic bank traffic."),
    "demo": ("cxstream.demo:demo", "Run the whole platform locally end to end."),
    "bench": ("cxstream.bench.cli:bench", "Run a benchmark and write bench-results/NAME.json."),
    "topics": ("streams.cli:topics", "Create or update the Kafka topics."),
    "schemas": ("schemas.cli:schemas", "List schemas and check their compatibility."),
    "registry": ("streams.registry_server:registry", "Serve or sync the schema registry."),
    "db": ("sinks.clickhouse.cli:db", "Apply ClickHouse migrations, show status, drop old data."),
    "sink": ("sinks.clickhouse.cli:sink", "Run the ClickHouse sink (Kafka -> ClickHouse)."),
    "dashboards": ("dashboards.cli:dashboards", "Build the Grafana boards or push them."),
    "api": ("cxstream.api.cli:api", "Serve the HTTP API (event ingest, profile lookups)."),
    "notify": ("cxstream.notify.cli:notify", "Deliver alerts to on-call, or run a test receiver."),
    "soak": ("cxstream.faults.cli:soak", "Run the platform under injected faults and verify it."),
    "report": ("cxstream.report.cli:report", "Render the QA report (HTML) of a period."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        target = _COMMANDS[cmd_name][0]
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(_COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.option("--log-level", default=None, help="Override CX_LOG_LEVEL.")
def cli(log_level: str | None) -> None:
    """cxstream: live customer-experience KPIs, profiles, SLA alerts and security flags."""
    from cxstream.settings import load_settings

    level = log_level or load_settings().log_level
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CxStreamError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
