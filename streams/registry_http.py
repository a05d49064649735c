"""A client of the Confluent Schema Registry REST API (Confluent, Apicurio ccompat, Karapace).

It implements :class:`streams.registry.SchemaRegistry` so the codec can take its ids from a
shared registry instead of the repo's lock file. Ids are cached for good (a registry never
reuses one); the newest version of a subject is cached for ``registry.latest_cache_seconds``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from cxstream.errors import SchemaError, ServiceError
from cxstream.settings import Settings
from schemas import SchemaCatalog, SchemaVersion, load_catalog
from streams.registry import name_for_subject, normalized, subject_for

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True)
class RegisteredSchema:
    subject: str
    version: int
    schema_id: int
    schema: str


@dataclass(frozen=True)
class CompatibilityResult:
    is_compatible: bool
    messages: tuple[str, ...] = ()


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without user:password, user, password): secrets never appear in messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url.rstrip("/"), None, None
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare.rstrip("/"), parts.username, parts.password


class ConfluentRegistryClient:
    """Schema registry over HTTP; event type ``name`` lives under subject ``<topic>-value``."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: SchemaCatalog | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if settings.registry.url is None:
            raise ServiceError("registry.url is not set (CX_REGISTRY__URL)")
        self.settings = settings
        self.url, url_user, url_password = _split_credentials(settings.registry.url)
        rs = settings.registry
        user = rs.username or url_user
        password = rs.password.get_secret_value() if rs.password else url_password
        verify: Any = str(rs.ssl_cafile) if rs.ssl_cafile and rs.ssl_verify else rs.ssl_verify
        self._http = httpx.Client(
            base_url=self.url,
            auth=httpx.BasicAuth(user, password or "") if user else None,
            verify=verify,
            timeout=rs.timeout_seconds,
            headers={"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE},
            transport=transport,
        )
        self._catalog = catalog
        self._by_id: dict[int, SchemaVersion] = {}
        self._latest: dict[str, tuple[float, SchemaVersion]] = {}
        self._registered: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    # ---- plumbing

    @property
    def catalog(self) -> SchemaCatalog:
        """The repo's schemas: how a schema read from the server is named and versioned."""
        if self._catalog is None:
            self._catalog = load_catalog()
        return self._catalog

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConfluentRegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                 *, missing_ok: bool = False) -> Any:
        where = f"{method} {self.url}{path}"
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServiceError(f"schema registry {where}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            try:
                error = response.json()
                detail = f"error {error.get('error_code')}: {error.get('message')}"
            except ValueError:
                detail = response.text[:200]
            exc_type = SchemaError if response.status_code in (404, 409, 422) else ServiceError
            raise exc_type(f"schema registry {where}: HTTP {response.status_code}, {detail}")
        try:
            return response.json()
        except ValueError as exc:
            raise ServiceError(f"schema registry {where}: answer is not JSON") from exc

    def _version(self, name: str, schema: str, schema_id: int,
                 version: int | None) -> SchemaVersion:
        definition = json.loads(schema)
        if version is None:  # the repo's version of this exact schema, if the repo has it
            text = normalized(definition)
            local = [sv for sv in self._local_versions(name) if normalized(sv.definition) == text]
            version = local[0].version if local else 0
        return SchemaVersion(name, version, schema_id, definition)

    def _local_versions(self, name: str) -> list[SchemaVersion]:
        try:
            return self.catalog.versions(name)
        except SchemaError:
            return []

    # ---- SchemaRegistry

    def latest(self, name: str) -> SchemaVersion:
        cached = self._latest.get(name)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        subject = subject_for(self.settings, name)
        answer = self._request("GET", f"/subjects/{quote(subject, safe='')}/versions/latest",
                               missing_ok=True)
        if answer is None:
            raise SchemaError(
                f"subject {subject} is not registered in {self.url}; run `cxstream registry sync`"
            )
        sv = self._version(name, answer["schema"], int(answer["id"]), int(answer["version"]))
        with self._lock:
            self._by_id.setdefault(sv.schema_id, sv)
            self._latest[name] = (now + self.settings.registry.latest_cache_seconds, sv)
        return sv

    def by_id(self, schema_id: int) -> SchemaVersion:
        sv = self._by_id.get(schema_id)
        if sv is not None:
            return sv
        answer = self._request("GET", f"/schemas/ids/{int(schema_id)}", missing_ok=True)
        if answer is None:
            raise SchemaError(f"unknown schema id {schema_id} in {self.url}")
        if answer.get("schemaType", "AVRO") != "AVRO":
            raise SchemaError(f"schema id {schema_id} is {answer['schemaType']}, not Avro")
        name = self._name_of(schema_id, json.loads(answer["schema"]))
        sv = self._version(name, answer["schema"], schema_id, None)
        with self._lock:
            self._by_id[schema_id] = sv
        return sv

    def _name_of(self, schema_id: int, definition: Mapping[str, Any]) -> str:
        """Event type of a schema: by its record's full name, else by the subjects using it."""
        full = f"{definition.get('namespace', '')}.{definition.get('name', '')}".lstrip(".")
        for name in self.catalog.names():
            if self.catalog.latest(name).full_name == full:
                return name
        uses = self._request("GET", f"/schemas/ids/{int(schema_id)}/versions", missing_ok=True)
        for use in uses or ():
            found = name_for_subject(self.settings, use.get("subject", ""))
            if found:
                return found
        raise SchemaError(f"schema id {schema_id} ({full}) is not a cxstream event schema")

    # ---- the rest of the API

    def subjects(self) -> list[str]:
        return list(self._request("GET", "/subjects"))

    def register(self, name: str, definition: Mapping[str, Any] | str) -> int:
        """Register ``definition`` under the subject of ``name``; the id the server gives it."""
        schema = definition if isinstance(definition, str) else json.dumps(definition)
        subject = subject_for(self.settings, name)
        key = (subject, normalized(schema))
        if key in self._registered:
            return self._registered[key]
        answer = self._request("POST", f"/subjects/{quote(subject, safe='')}/versions",
                               {"schema": schema, "schemaType": "AVRO"})
        schema_id = int(answer["id"])
        with self._lock:
            self._registered[key] = schema_id
            self._latest.pop(name, None)
        return schema_id

    def lookup(self, name: str, definition: Mapping[str, Any] | str) -> RegisteredSchema | None:
        """The registered version of exactly this schema under ``name``'s subject, if any."""
        schema = definition if isinstance(definition, str) else json.dumps(definition)
        subject = subject_for(self.settings, name)
        answer = self._request("POST", f"/subjects/{quote(subject, safe='')}",
                               {"schema": schema, "schemaType": "AVRO"}, missing_ok=True)
        if answer is None:
            return None
        return RegisteredSchema(answer["subject"], int(answer["version"]), int(answer["id"]),
                                answer["schema"])

    def check_compatibility(self, name: str,
                            definition: Mapping[str, Any] | str) -> CompatibilityResult:
        """Whether the subject's compatibility rule accepts ``definition`` as its next version."""
        schema = definition if isinstance(definition, str) else json.dumps(definition)
        subject = subject_for(self.settings, name)
        answer = self._request(
            "POST",
            f"/compatibility/subjects/{quote(subject, safe='')}/versions/latest?verbose=true",
            {"schema": schema, "schemaType": "AVRO"},
            missing_ok=True,
        )
        if answer is None:  # no version yet: anything is compatible
            return CompatibilityResult(True)
        return CompatibilityResult(bool(answer["is_compatible"]),
                                   tuple(answer.get("messages") or ()))

    def set_compatibility(self, name: str, level: str) -> None:
        subject = subject_for(self.settings, name)
        self._request("PUT", f"/config/{quote(subject, safe='')}", {"compatibility": level})

    def sync(self, catalog: SchemaCatalog | None = None, *, compatibility: str | None =
             "BACKWARD_TRANSITIVE") -> dict[tuple[str, int], int]:
        """Register every version of every repo schema, oldest first; ``{(name, v): id}``.

        The ids come from the server, so they differ from the lock file's unless the server is
        ``cxstream registry serve``. With ``compatibility`` set, each subject's rule is set first.
        """
        catalog = catalog or self.catalog
        ids: dict[tuple[str, int], int] = {}
        for name in catalog.names():
            if compatibility:
                self.set_compatibility(name, compatibility)
            for sv in catalog.versions(name):
                ids[(name, sv.version)] = self.register(name, sv.canonical)
        return ids


__all__ = ["CompatibilityResult", "ConfluentRegistryClient", "RegisteredSchema"]
