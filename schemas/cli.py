"""``cxstream schemas list|check|lock``: the event contracts and their evolution rules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click

from schemas.catalog import LOCK_FILE, SCHEMA_ROOT


def _committed_lock(lock_file: Path) -> dict[str, dict[str, int]] | None:
    """The lock file as last committed (ids there must not change), or None outside git."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=lock_file.parent,
                             capture_output=True, text=True, check=True).stdout.strip()
        relative = lock_file.resolve().relative_to(Path(top).resolve())
        shown = subprocess.run(["git", "show", f"HEAD:{relative.as_posix()}"], cwd=top,
                               capture_output=True, text=True, check=True).stdout
        data: dict[str, dict[str, int]] = json.loads(shown)
        return data
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None


_root = click.option("--root", type=click.Path(path_type=Path, file_okay=False),
                     default=SCHEMA_ROOT, show_default=True,
                     help="Folder of <name>/vN.avsc files.")
_lock = click.option("--lock-file", type=click.Path(path_type=Path, dir_okay=False),
                     default=LOCK_FILE, show_default=True, help="Schema ids.")


@click.group()
def schemas() -> None:
    """List the event schemas, check their evolution rules, lock ids of new versions."""


@schemas.command("list")
@_root
@_lock
def list_(root: Path, lock_file: Path) -> None:
    """Every schema with its versions, ids, partition key and PII fields."""
    from schemas.catalog import load_catalog

    catalog = load_catalog(root, lock_file)
    for name in catalog.names():
        versions = catalog.versions(name)
        latest = versions[-1]
        ids = ", ".join(f"v{sv.version}={sv.schema_id}" for sv in versions)
        pii = ", ".join(f"{p.name}({p.pii_class})" for p in latest.pii_fields) or "-"
        click.echo(f"{name:26} {ids:14} fields={len(latest.field_names):<3} "
                   f"key={'|'.join(latest.partition_key)}  pii={pii}")


@schemas.command()
@_root
@_lock
@click.option("--against-git/--no-against-git", default=True,
              help="Also check that no id of the committed lock file changed.")
def check(root: Path, lock_file: Path, against_git: bool) -> None:
    """Fail unless each version reads all earlier ones (BACKWARD_TRANSITIVE) and all rules hold."""
    from schemas.compat import COMPATIBILITY, check_schemas

    previous = _committed_lock(lock_file) if against_git else None
    problems = check_schemas(root, lock_file, previous_lock=previous)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} schema problem(s) in {root}")
    from schemas.catalog import load_catalog

    catalog = load_catalog(root, lock_file)
    versions = sum(len(catalog.versions(n)) for n in catalog.names())
    click.echo(f"ok: {len(catalog.names())} schemas, {versions} versions, {COMPATIBILITY}, "
               f"ids locked{' and unchanged since HEAD' if previous is not None else ''}")


@schemas.command()
@_root
@_lock
def lock(root: Path, lock_file: Path) -> None:
    """Give each new version the next free id (existing ids never change), after checking it."""
    from schemas.catalog import assign_ids, read_lock
    from schemas.compat import check_schemas

    before = read_lock(lock_file)
    after = assign_ids(root, lock_file)
    added = [(name, v, i) for name, vs in sorted(after.items()) for v, i in sorted(vs.items())
             if v not in before.get(name, {})]
    for name, version, schema_id in added:
        click.echo(f"locked {name} v{version}: id {schema_id}")
    if not added:
        click.echo("nothing to lock: every version has an id")
    problems = check_schemas(root, lock_file)
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    if problems:
        raise click.ClickException("ids are locked, but `cxstream schemas check` fails: fix the "
                                   "schema before committing")
