"""A Confluent-compatible schema registry serving the repo's schemas with their locked ids.

Any tool that speaks the Confluent Schema Registry API (kcat, Kafka UI, Confluent's own
serializers, Spark, Flink...) can read our topics through it. The schemas are the repo's: a
registration is answered with the locked id when the schema is a version in the repo, and
refused otherwise, because ids are assigned on purpose (``cxstream schemas lock``), never by a
running server. Compatibility is BACKWARD_TRANSITIVE, checked by :mod:`schemas.compat`.

``cxstream registry serve`` runs it; ``cxstream registry sync --url`` pushes the repo's schemas
into a real registry instead.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from aiohttp import web

from cxstream.settings import Settings
from schemas import SchemaCatalog, SchemaVersion, load_catalog
from schemas.compat import COMPATIBILITY, read_problems
from streams.registry import normalized, subject_for

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

# Confluent's error codes, which clients show to users
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
NOT_PERMITTED = 42205


class RegistryState:
    """The subjects of a catalog under the topic naming of some settings."""

    def __init__(self, settings: Settings, catalog: SchemaCatalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.subjects = {subject_for(settings, name): name for name in catalog.names()}
        self._by_text = {(sv.name, normalized(sv.definition)): sv for sv in catalog}

    def versions(self, subject: str) -> list[SchemaVersion]:
        name = self.subjects.get(subject)
        if name is None:
            raise _error(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return self.catalog.versions(name)

    def version(self, subject: str, version: str) -> SchemaVersion:
        versions = self.versions(subject)
        if version in ("latest", "-1"):
            return versions[-1]
        try:
            number = int(version)
        except ValueError:
            raise _error(422, INVALID_VERSION, f"The specified version '{version}' is not a "
                         "valid version id. Allowed values are between [1, 2^31-1] and the "
                         "string \"latest\"") from None
        for sv in versions:
            if sv.version == number:
                return sv
        raise _error(404, VERSION_NOT_FOUND, f"Version {version} not found.")

    def find(self, subject: str, schema: str) -> SchemaVersion | None:
        name = self.subjects.get(subject)
        if name is None:
            raise _error(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        try:
            return self._by_text.get((name, normalized(schema)))
        except Exception as exc:
            raise _error(422, INVALID_SCHEMA, f"Invalid schema: {exc}") from exc


STATE = web.AppKey("state", RegistryState)


def _error(status: int, code: int, message: str) -> web.HTTPException:
    body = json.dumps({"error_code": code, "message": message})
    error_class = {404: web.HTTPNotFound, 409: web.HTTPConflict,
                   422: web.HTTPUnprocessableEntity}[status]
    return error_class(text=body, content_type="application/json")


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data), content_type="application/json")


def _registered(subject: str, sv: SchemaVersion) -> dict[str, Any]:
    return {"subject": subject, "version": sv.version, "id": sv.schema_id, "schema": sv.canonical}


async def _body_schema(request: web.Request) -> str:
    try:
        body = await request.json()
        schema = body["schema"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _error(422, INVALID_SCHEMA, "request body must be JSON with a 'schema' string") \
            from exc
    if body.get("schemaType", "AVRO") != "AVRO":
        raise _error(422, INVALID_SCHEMA, f"only AVRO schemas, not {body['schemaType']}")
    if not isinstance(schema, str):
        raise _error(422, INVALID_SCHEMA, "'schema' must be the schema as a JSON string")
    return schema


def create_app(settings: Settings, catalog: SchemaCatalog | None = None, *,
               credentials: tuple[str, str] | None = None) -> web.Application:
    """The registry as an aiohttp application (no server started).

    With ``credentials`` (user, password) every request needs that HTTP basic auth.
    """
    state = RegistryState(settings, catalog or load_catalog())
    routes = web.RouteTableDef()

    @routes.get("/")
    async def root(request: web.Request) -> web.Response:
        return _json({})

    @routes.get("/schemas/types")
    async def types(request: web.Request) -> web.Response:
        return _json(["AVRO"])

    @routes.get("/subjects")
    async def subjects(request: web.Request) -> web.Response:
        return _json(sorted(state.subjects))

    @routes.get("/subjects/{subject}/versions")
    async def versions(request: web.Request) -> web.Response:
        return _json([sv.version for sv in state.versions(request.match_info["subject"])])

    @routes.get("/subjects/{subject}/versions/{version}")
    async def version(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        return _json(_registered(subject, state.version(subject, request.match_info["version"])))

    @routes.get("/subjects/{subject}/versions/{version}/schema")
    async def version_schema(request: web.Request) -> web.Response:
        sv = state.version(request.match_info["subject"], request.match_info["version"])
        return web.Response(text=sv.canonical, content_type="application/json")

    @routes.post("/subjects/{subject}")
    async def lookup(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        sv = state.find(subject, await _body_schema(request))
        if sv is None:
            raise _error(404, SCHEMA_NOT_FOUND, "Schema not found")
        return _json(_registered(subject, sv))

    @routes.post("/subjects/{subject}/versions")
    async def register(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        schema = await _body_schema(request)
        sv = state.find(subject, schema)
        if sv is not None:
            return _json({"id": sv.schema_id})
        problems = _problems(state, subject, schema)
        if problems:
            raise _error(409, 409, "Schema being registered is incompatible with an earlier "
                         f"schema for subject \"{subject}\": {'; '.join(problems)}")
        raise _error(422, NOT_PERMITTED, "this registry serves the repository's schemas: add "
                     f"schemas/avro/{state.subjects[subject]}/vN.avsc and run `cxstream schemas "
                     "lock`, or sync a real registry with `cxstream registry sync`")

    @routes.post("/compatibility/subjects/{subject}/versions/{version}")
    async def compatibility(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        state.version(subject, request.match_info["version"])  # 404s like Confluent's
        problems = _problems(state, subject, await _body_schema(request))
        answer: dict[str, Any] = {"is_compatible": not problems}
        if request.query.get("verbose") == "true":
            answer["messages"] = problems
        return _json(answer)

    @routes.get("/schemas/ids/{id}")
    async def by_id(request: web.Request) -> web.Response:
        return _json({"schema": _by_id(state, request).canonical})

    @routes.get("/schemas/ids/{id}/schema")
    async def by_id_schema(request: web.Request) -> web.Response:
        return web.Response(text=_by_id(state, request).canonical, content_type="application/json")

    @routes.get("/schemas/ids/{id}/versions")
    async def by_id_versions(request: web.Request) -> web.Response:
        sv = _by_id(state, request)
        return _json([{"subject": subject_for(settings, sv.name), "version": sv.version}])

    @routes.get("/config")
    async def config(request: web.Request) -> web.Response:
        return _json({"compatibilityLevel": COMPATIBILITY})

    @routes.get("/config/{subject}")
    async def subject_config(request: web.Request) -> web.Response:
        state.versions(request.match_info["subject"])
        return _json({"compatibilityLevel": COMPATIBILITY})

    @routes.put("/config")
    @routes.put("/config/{subject}")
    async def set_config(request: web.Request) -> web.Response:
        try:
            level = (await request.json())["compatibility"]
        except (ValueError, KeyError, TypeError) as exc:
            raise _error(422, 42203, "body must be {\"compatibility\": LEVEL}") from exc
        if level != COMPATIBILITY:
            raise _error(422, NOT_PERMITTED, f"compatibility is fixed at {COMPATIBILITY}")
        return _json({"compatibility": level})

    middlewares = [_content_type]
    if credentials is not None:
        middlewares.insert(0, _basic_auth(*credentials))
    app = web.Application(middlewares=middlewares)
    app.add_routes(routes)
    app[STATE] = state
    return app


@web.middleware
async def _content_type(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                        ) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            exc.content_type = CONTENT_TYPE
        raise
    if response.content_type == "application/json":
        response.content_type = CONTENT_TYPE
    return response


def _basic_auth(user: str, password: str) -> Any:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    @web.middleware
    async def check(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                    ) -> web.StreamResponse:
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            raise web.HTTPUnauthorized(
                text=json.dumps({"error_code": 401, "message": "Unauthorized"}),
                content_type="application/json",
                headers={"WWW-Authenticate": 'Basic realm="cxstream registry"'},
            )
        return await handler(request)

    return check


def _by_id(state: RegistryState, request: web.Request) -> SchemaVersion:
    try:
        return state.catalog.by_id(int(request.match_info["id"]))
    except Exception:
        raise _error(404, SCHEMA_NOT_FOUND, "Schema not found") from None


def _problems(state: RegistryState, subject: str, schema: str) -> list[str]:
    try:
        definition = json.loads(schema)
    except ValueError as exc:
        raise _error(422, INVALID_SCHEMA, f"Invalid schema: {exc}") from exc
    earlier = [sv.definition for sv in state.versions(subject)]
    try:
        return read_problems(definition, earlier)
    except Exception as exc:  # the avro parser rejects it
        raise _error(422, INVALID_SCHEMA, f"Invalid schema: {exc}") from exc


# --------------------------------------------------------------------------- running it


@contextmanager
def running_server(settings: Settings, *, host: str = "127.0.0.1", port: int = 0,
                   catalog: SchemaCatalog | None = None,
                   credentials: tuple[str, str] | None = None) -> Iterator[str]:
    """Serve the registry from a background thread; yields its base URL (``port=0``: any free)."""
    app = create_app(settings, catalog, credentials=credentials)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()
    failure: list[BaseException] = []
    urls: list[str] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or ()
        bound = sockets[0].getsockname()[1] if sockets else port
        urls.append(f"http://{host}:{bound}")

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="cx-registry", daemon=True)
    thread.start()
    started.wait(10)
    if failure or not urls:
        raise RuntimeError(f"registry server did not start on {host}:{port}") from (
            failure[0] if failure else None)
    try:
        yield urls[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


# --------------------------------------------------------------------------- CLI


@click.group()
def registry() -> None:
    """Serve the repo's schemas as a Confluent-compatible registry, or push them into one."""


@registry.command()
@click.option("--host", default=None, help="Address to listen on [registry.serve_host].")
@click.option("--port", type=int, default=None, help="Port [registry.serve_port].")
def serve(host: str | None, port: int | None) -> None:
    """Serve schemas/ read-only, with the ids of schemas/registry.lock.json."""
    from cxstream.settings import load_settings

    settings = load_settings()
    host = host or settings.registry.serve_host
    port = settings.registry.serve_port if port is None else port
    app = create_app(settings)
    click.echo(f"schema registry on http://{host}:{port} ({len(app[STATE].subjects)} subjects)")
    web.run_app(app, host=host, port=port, print=None)


@registry.command()
@click.option("--url", default=None, help="Registry URL [registry.url].")
@click.option("--compatibility/--no-compatibility", default=True,
              help=f"Set each subject to {COMPATIBILITY} first.")
def sync(url: str | None, compatibility: bool) -> None:
    """Register every version of every schema, oldest first, in a Confluent-compatible registry."""
    from cxstream.settings import load_settings
    from streams.registry_http import ConfluentRegistryClient

    settings = load_settings()
    if url:
        settings = settings.model_copy(
            update={"registry": settings.registry.model_copy(update={"url": url})})
    if settings.registry.url is None:
        raise click.UsageError("give --url or set CX_REGISTRY__URL")
    with ConfluentRegistryClient(settings) as client:
        ids = client.sync(compatibility=COMPATIBILITY if compatibility else None)
    for (name, version), schema_id in sorted(ids.items()):
        click.echo(f"{subject_for(settings, name)} v{version}: id {schema_id}")
    click.echo(f"{len(ids)} schema versions registered in {client.url}")


__all__ = ["STATE", "RegistryState", "create_app", "registry", "running_server"]
