"""The detection step, free of Kafka: batches of access events in, flags and re-keyed failures out.

:class:`SecurityEngine` is what the processor runs per fetched batch (and what the unit tests and
the benchmark run directly). Per event, in partition order: skip it if the principal's state
already reflects its offset (replay) or its event id (client retry); compute the model features
from the state as it was; run the rules; score (and learn, unless the model reflects the offset)
with the principal type's model; turn findings and score into flags (suppression, ids:
:mod:`processors.security.flags`). Changed states and due model checkpoints are staged and
written once per batch. Erasure (:meth:`SecurityEngine.on_erasure`,
:meth:`SecurityEngine.on_erasure_broadcast`, :mod:`processors.security.erasure`): erased
customers' state is removed, and their replayed events are skipped before any of this.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cxstream.settings import Settings
from online_models.anomaly import AnomalyModel, preload
from processors.security import flags as flagging
from processors.security.access import Access, access_reader
from processors.security.erasure import (
    ErasedPrincipals,
    PartitionOf,
    kafka_partition,
    keep_ms,
    latest_requests,
    names_any,
    scrub_network,
    scrub_staff,
)
from processors.security.features import features as model_features
from processors.security.rules import Finding, rules_for
from processors.security.rules import credential_stuffing as stuffing
from processors.security.rules.base import Env
from processors.security.state import (
    RECENT_IDS,
    ModelStore,
    StateStore,
    id_fingerprint,
    new_state,
    team_key,
)
from streams.batching import InputEvent

#: staff actions the model samples once per 5 minutes instead of scoring each (the model is
#: the costliest step: ~40 us per scored event)
_STAFF_SAMPLED = frozenset({"record_view", "api_call"})
_STAFF_SAMPLE_MS = 900_000


@dataclass
class Outcome:
    """What one batch produced."""

    flags: list[dict[str, Any]] = field(default_factory=list)
    #: failed logins to re-key for credential stuffing: (key, source event)
    forwards: list[tuple[str, InputEvent]] = field(default_factory=list)


@dataclass
class EngineStats:
    events: int = 0
    network_events: int = 0
    replays_skipped: int = 0
    duplicates_skipped: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    scored: int = 0
    erasures: int = 0
    erased_states_deleted: int = 0
    erased_entries_scrubbed: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "network_events": self.network_events,
            "replays_skipped": self.replays_skipped,
            "duplicates_skipped": self.duplicates_skipped,
            "flags": dict(sorted(self.flags.items())),
            "flags_suppressed": self.suppressed,
            "scored": self.scored,
            "erasures": self.erasures,
            "erased_states_deleted": self.erased_states_deleted,
            "erased_entries_scrubbed": self.erased_entries_scrubbed,
        }


class SecurityEngine:
    def __init__(
        self,
        settings: Settings,
        principals: StateStore,
        networks: StateStore,
        models: StateStore,
        erased: StateStore | None = None,
        *,
        partition_of: PartitionOf | None = None,
    ) -> None:
        self.settings = settings
        self.config = cfg = settings.security
        self.principals = principals
        self.networks = networks
        #: erasure markers (a plain dict when the caller has no table: tests, benchmarks)
        self.erased = ErasedPrincipals(
            settings, erased or StateStore({}, faust_tables=False), keep_ms=keep_ms(settings)
        )
        partitions = settings.kafka.partitions
        self.partition_of: PartitionOf = partition_of or (
            lambda key: kafka_partition(key, partitions)
        )
        self.read = access_reader(settings)
        self.model_store = ModelStore(
            models,
            lambda: AnomalyModel(
                n_trees=cfg.anomaly_trees,
                height=cfg.anomaly_height,
                window_size=cfg.anomaly_window,
                learn_every=cfg.anomaly_learn_every,
            ),
            every=cfg.anomaly_checkpoint_every,
        )
        self.stats = EngineStats()
        # rules read settings and local time from it; teams are set per partition and batch
        self.env = Env(cfg)
        if cfg.anomaly_enabled:
            preload()

    # -- access events (keyed by principal) -------------------------------------------------

    def on_access(self, batch: Sequence[InputEvent]) -> Outcome:
        try:
            return self._on_access(batch)
        except BaseException:
            self._abort()
            raise

    def _on_access(self, batch: Sequence[InputEvent]) -> Outcome:
        out = Outcome()
        cfg = self.config
        env = self.env
        stats = self.stats
        read = self.read
        principals = self.principals
        scores = self._scores
        teams_loaded: dict[int, dict[str, Any]] = {}
        last_message: dict[int, Any] = {}
        erased = self.erased
        any_erased = len(erased) > 0
        for item in batch:
            stats.events += 1
            partition, offset = item.partition, item.offset
            event = read(item.record, partition, offset)
            principal = event.principal
            if any_erased and (
                erased.blocks(principal, event.ts) or erased.blocks(event.target, event.ts)
            ):
                continue  # a replay of (or about) an erased customer: it must not come back
            state = principals.get(principal, partition)
            if state is None:
                state = new_state(event.principal_type)
            elif offset <= state["offset"]:
                stats.replays_skipped += 1
                continue
            state["offset"] = offset
            ids: list[str] = state["ids"]
            fingerprint = id_fingerprint(event.event_id)
            if fingerprint in ids:
                stats.duplicates_skipped += 1
                principals.stage(principal, state, item.message, partition)
                continue
            ids.append(fingerprint)
            if len(ids) > RECENT_IDS:
                del ids[0]
            if event.principal_type == "staff":
                env.teams = teams_loaded.setdefault(partition, {})
                self._load_team(env, partition, event.team)
            features = model_features(state, event, env) if scores(state, event) else None
            findings = [
                f
                for rule in rules_for(event.principal_type, event.action)
                if (f := rule(state, event, env))
            ]
            score, model = self._score(event, features)
            if findings or score is not None:
                self._flag(out, state, event, findings, score, model, features)
            principals.stage(principal, state, item.message, partition)
            last_message[partition] = item.message
            if event.action == "login_failure":
                for key in stuffing.network_keys(event):
                    out.forwards.append((key, item))
        for partition, teams in teams_loaded.items():
            for team, value in teams.items():
                principals.stage(
                    team_key(partition, team), value, last_message[partition], partition
                )
        if cfg.anomaly_enabled:
            for partition, message in last_message.items():
                for principal_type in ("customer", "staff"):
                    self.model_store.checkpoint(partition, principal_type, message, force=False)
        principals.flush()
        self.model_store.table.flush()
        if any_erased and batch:
            now_ms = int(time.time() * 1000)
            for partition, message in last_message.items():
                erased.expire(partition, message, now_ms)
            erased.store.flush()
        return out

    def forget(self, partitions: set[int]) -> None:
        """Partitions were revoked: drop their cached states and models (read again on use)."""
        self.principals.forget(partitions)
        self.networks.forget(partitions)
        self.model_store.forget(partitions)
        self.model_store.table.forget(partitions)
        self.erased.forget(partitions)

    def _abort(self) -> None:
        # nothing of a failed batch may stay in memory: the tables hold the last written states
        self.principals.abort()
        self.networks.abort()
        self.model_store.table.abort()
        self.erased.store.abort()
        self.erased.forget(set())

    def _scores(self, state: dict[str, Any], event: Access) -> bool:
        """Whether the model sees this event: decision actions always; the frequent staff
        look-ups once per staff member and 5 minutes (their features are window aggregates)."""
        cfg = self.config
        if not cfg.anomaly_enabled:
            return False
        if event.action in cfg.anomaly_actions:
            return True
        if event.principal_type != "staff" or event.action not in _STAFF_SAMPLED:
            return False
        bucket = event.ts // _STAFF_SAMPLE_MS
        if state.get("am") == bucket:
            return False
        state["am"] = bucket
        return True

    def _load_team(self, env: Env, partition: int, team: str | None) -> None:
        name = team or "?"
        if name not in env.teams:
            stored = self.principals.get(team_key(partition, name), partition)
            if stored is not None:
                env.teams[name] = stored

    def _score(
        self, event: Access, features: dict[str, float] | None
    ) -> tuple[float | None, AnomalyModel | None]:
        if features is None:
            return None, None
        model = self.model_store.model(event.partition, event.principal_type)
        self.stats.scored += 1
        return model.observe(features, event.offset), model

    def _flag(
        self,
        out: Outcome,
        state: dict[str, Any],
        event: Access,
        findings: list[Finding],
        score: float | None,
        model: AnomalyModel | None,
        features: dict[str, float] | None,
    ) -> None:
        cfg = self.config
        warmed = model is not None and model.observed > cfg.anomaly_warmup
        anomalous = score is not None and warmed and score >= cfg.anomaly_threshold
        drivers = model.explain(features) if anomalous and model and features else []
        if not findings and anomalous and features is not None and score is not None:
            findings = [flagging.anomaly_finding(event, score, drivers, features)]
        for finding in findings:
            self._raise(out, state, event, finding, score if warmed else None, drivers)

    def _raise(
        self,
        out: Outcome,
        state: dict[str, Any],
        event: Access,
        finding: Finding,
        score: float | None,
        drivers: Sequence[tuple[str, float]] = (),
    ) -> None:
        if flagging.suppressed(state, finding.rule, event.ts):
            self.stats.suppressed += 1
            return
        flagging.suppress(state, finding.rule, event.ts, self.config)
        out.flags.append(
            flagging.build_flag(finding, event, self.config, score=score, drivers=drivers)
        )
        self.stats.flags[finding.rule] = self.stats.flags.get(finding.rule, 0) + 1

    # -- re-keyed failed logins (keyed by ip pseudonym / device) ------------------------------

    def on_network(self, batch: Sequence[InputEvent]) -> Outcome:
        try:
            return self._on_network(batch)
        except BaseException:
            self._abort()
            raise

    def _on_network(self, batch: Sequence[InputEvent]) -> Outcome:
        out = Outcome()
        env = self.env
        erased = self.erased
        any_erased = len(erased) > 0
        for item in batch:
            self.stats.network_events += 1
            record = item.record
            if any_erased and erased.blocks(record["principal_id"], record["occurred_at"]):
                continue  # an erased customer's failed login, forwarded again
            key = (item.key or b"").decode()
            state = self.networks.get(key, item.partition) or {"offset": -1}
            if item.offset <= state["offset"]:
                self.stats.replays_skipped += 1
                continue
            state["offset"] = item.offset
            event = self.read(item.record, item.partition, item.offset)
            finding = stuffing.evaluate(state, event, key, env)
            if finding is not None:
                self._raise(out, state, event, finding, None)
            self.networks.stage(key, state, item.message, item.partition)
        self.networks.flush()
        return out

    # -- erasure (processors/security/erasure.py) ----------------------------------------------

    def on_erasure(self, batch: Sequence[InputEvent]) -> int:
        """Requests on their own partition: mark, and delete each customer's principal state.

        The caller then re-sends every request to all partitions (:meth:`on_erasure_broadcast`).
        Returns the number of states deleted.
        """
        try:
            return self._on_erasure(batch)
        except BaseException:
            self._abort()
            raise

    def _on_erasure(self, batch: Sequence[InputEvent]) -> int:
        now_ms = int(time.time() * 1000)
        deleted = 0
        for item in batch:
            self.stats.erasures += 1
            cid = str(item.record["customer_id"])
            mark = latest_requests([item.record], self.settings)[cid]
            self.erased.add(item.partition, mark, item.message, now_ms)
            if self.principals.get(cid, item.partition) is not None:
                self.principals.delete(cid, item.message, item.partition)
                deleted += 1
        self.erased.store.flush()
        self.principals.flush()
        self.stats.erased_states_deleted += deleted
        return deleted

    def on_erasure_broadcast(self, batch: Sequence[InputEvent]) -> int:
        """Requests re-sent to this partition: mark, and drop the customers from the entries of
        this partition that name them (staff windows, failed logins per network key).

        Scans the tables' local entries (erasures are rare; a cheap field check comes first).
        Returns the number of entries changed.
        """
        try:
            return self._on_erasure_broadcast(batch)
        except BaseException:
            self._abort()
            raise

    def _on_erasure_broadcast(self, batch: Sequence[InputEvent]) -> int:
        if not batch:
            return 0
        now_ms = int(time.time() * 1000)
        partition = batch[0].partition
        message = batch[-1].message
        latest = latest_requests((item.record for item in batch), self.settings)
        for mark in latest.values():
            self.erased.add(partition, mark, message, now_ms)
        customers = set(latest)
        changed = 0
        for store, fields, scrub in (
            (self.principals, ("bk_w", "bk_h"), scrub_staff),
            (self.networks, ("cs",), scrub_network),
        ):
            for key, stored in list(store.table.items()):
                if key.startswith("~") or not names_any(stored, customers, fields):
                    continue
                if self.partition_of(key) != partition:
                    continue  # another partition's entry: its owner scrubs it
                state = store.get(key, partition)
                if state is not None and scrub(state, customers):
                    store.stage(key, state, message, partition)
                    changed += 1
        self.erased.store.flush()
        self.principals.flush()
        self.networks.flush()
        self.stats.erased_entries_scrubbed += changed
        return changed
