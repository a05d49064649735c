"""``cxstream worker`` (run a Faust worker) and ``cxstream topics apply|list``."""

from __future__ import annotations

import click

from cxstream.settings import Settings, load_settings


def _settings_with(settings: Settings, *, app_id: str | None, web_port: int | None) -> Settings:
    update: dict[str, object] = {}
    if app_id is not None:
        update["app_id"] = app_id
    if web_port is not None:
        update["web_port"] = web_port
    if not update:
        return settings
    return settings.model_copy(update={"worker": settings.worker.model_copy(update=update)})


@click.command()
@click.option(
    "--processor",
    "-p",
    "processor_names",
    multiple=True,
    help="Processor to run (repeatable); default: all of processors.PROCESSORS.",
)
@click.option("--app-id", default=None, help="Override CX_WORKER__APP_ID (the consumer group).")
@click.option("--web-port", type=int, default=None, help="Override CX_WORKER__WEB_PORT.")
@click.option(
    "--ensure-topics/--no-ensure-topics",
    default=True,
    show_default=True,
    help="Create/update the platform topics before starting.",
)
@click.option("--loglevel", default=None, help="Faust log level (default: CX_LOG_LEVEL).")
def worker(
    processor_names: tuple[str, ...],
    app_id: str | None,
    web_port: int | None,
    ensure_topics: bool,
    loglevel: str | None,
) -> None:
    """Run a Faust stream worker until Ctrl-C or SIGTERM (both stop it cleanly)."""
    from processors import PROCESSORS, load_processor
    from streams.kafka_config import check_connection

    settings = _settings_with(load_settings(), app_id=app_id, web_port=web_port)
    names = processor_names or tuple(PROCESSORS)
    processors = [load_processor(name) for name in names]
    # fail fast with a clear error on a bad address or TLS/SASL setting (Faust would retry)
    check_connection(settings)
    if ensure_topics:
        from streams.topics import ensure_topics as apply_topics
        from streams.topics import platform_topics

        report = apply_topics(settings, platform_topics(settings))
        click.echo(
            f"topics: {len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged",
            err=True,
        )

    import faust

    from streams.app import create_app
    from streams.gc_tuning import tuned_garbage_collector, worker_thresholds

    app = create_app(settings, processors=processors)
    worker = settings.worker
    thresholds = worker_thresholds(
        worker.gc_thresholds, worker.gc_between_batches, worker.gc_backstop_threshold
    )
    # Worker installs SIGINT/SIGTERM handlers that stop the app (commit, flush, leave group);
    # execute_from_commandline never returns: it raises SystemExit with the exit code.
    with tuned_garbage_collector(thresholds):
        faust.Worker(
            app,
            loglevel=(loglevel or settings.log_level).lower(),
            override_logging=False,
        ).execute_from_commandline()


@click.group()
def topics() -> None:
    """Create, update or list the Kafka topics of the platform."""


@topics.command("apply")
@click.option("--dry-run", is_flag=True, help="Only show the specs that would be applied.")
def topics_apply(dry_run: bool) -> None:
    """Create missing topics, align configs, add partitions (idempotent)."""
    from streams.topics import ensure_topics, platform_topics

    settings = load_settings()
    specs = platform_topics(settings)
    if dry_run:
        for spec in specs:
            config = ", ".join(f"{k}={v}" for k, v in spec.config().items())
            click.echo(
                f"{spec.name}  partitions={spec.partitions} rf={spec.replication_factor}  {config}"
            )
        return
    report = ensure_topics(settings, specs)
    for name in report.created:
        click.echo(f"created    {name}")
    for name, changes in report.updated.items():
        click.echo(f"updated    {name}: {'; '.join(changes)}")
    for name in report.unchanged:
        click.echo(f"unchanged  {name}")
    for warning in report.warnings:
        click.echo(f"warning    {warning}", err=True)


@topics.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also topics outside the platform list.")
def topics_list(show_all: bool) -> None:
    """Show the platform topics as the cluster has them."""
    from streams.topics import admin_client, describe_topics, platform_topics

    settings = load_settings()
    specs = {spec.name: spec for spec in platform_topics(settings)}
    states = describe_topics(admin_client(settings), None if show_all else list(specs))
    for name in sorted(set(specs) | set(states) if show_all else specs):
        state = states.get(name)
        if state is None:
            click.echo(f"{name}  MISSING")
            continue
        spec = specs.get(name)
        keys = spec.config() if spec else {"cleanup.policy": "", "retention.ms": ""}
        config = ", ".join(f"{k}={state.config.get(k)}" for k in keys)
        click.echo(f"{name}  partitions={state.partitions} rf={state.replication_factor}  {config}")
