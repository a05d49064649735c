"""``cxstream bench reco``: the recommender on the closed-loop simulator.

- click-through of the River bandit vs random vs popularity (and an oracle that knows the hidden
  preferences, the ceiling of this simulator), same seed, same visits, Wilson 95 % intervals;
  each policy learns online from its own feedback (``LocalRecommender``: the processor's code).
  Also the contextual model alone (``river_contextual``: the bandit without its per-customer
  posterior), to show what the per-customer layer adds. Per impression (the headline) and per
  visit (clicks over all visits, lists or not);
- ``informed_ceiling``: the best a learner can do here (see :class:`_InformedCeiling`): it knows
  the simulator's need probabilities per customer and learns only the draw from feedback. The
  oracle knows the draw itself, so the gap between the two is what no learner can close;
- learning rate: feedback events applied per second by the learner in process (join + River
  learn), and through a real ``cxstream worker --processor reco`` from Kafka (the bandit run's
  feedback preloaded; first to last event learned, from the worker's stats), with the raw
  confluent-kafka consume + decode rate of the same events as the reference;
- restart to serving: the worker is killed (SIGKILL) after its checkpoints, restarted, and timed
  until it serves a list to a new customer from the restored models. A killed member holds its
  partitions until the broker's session timeout, so the figure is bounded below by
  ``session_timeout`` (option; 6 s is the broker's minimum, the settings' default is 45 s);
- top-5 lookup p99 from Redis directly (GET of the served JSON), if Redis answers.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from cxstream.bench.cleanup import delete_redis_prefix
from cxstream.errors import ServiceError
from cxstream.settings import Settings, section_environment
from cxstream.simulate.config import SimulationConfig
from cxstream.simulate.loop import ClosedLoop
from online_models.reco.ips import wilson_interval
from online_models.reco.local import LocalRecommender
from online_models.reco.policy import Choice, Features, History, Policy, make_policy

START_MS = 1_780_000_000_000
POLICIES = (
    "random", "popularity", "river_contextual", "river_bandit", "informed_ceiling", "oracle",
)  # fmt: skip


class _Oracle:
    """Knows every customer's hidden preferences (only for the ceiling)."""

    name = "oracle"

    def __init__(self, loop: ClosedLoop) -> None:
        self.updates = 0
        self.prefs = {c.customer_id: c.preferences for c in loop.customers}
        self.customer = ""

    def rank(
        self, x: Features, eligible: Any, k: int, rng: Any, history: History | None = None
    ) -> list[Choice]:
        prefs = self.prefs[self.customer]
        return [
            Choice(p, prefs[p], 1.0, "oracle")
            for p in sorted(eligible, key=lambda p: -prefs[p])[:k]
        ]

    def learn(self, x: Features, product_id: str, position: int, clicked: bool) -> None:
        self.updates += 1

    def probability(
        self, x: Features, eligible: Any, product_id: str, history: History | None = None
    ) -> float:
        return 0.0


class _InformedCeiling(_Oracle):
    """What learning from feedback can reach at best on this simulator: knows each customer's
    need *probabilities* (the simulator's need weights, including the unobservable western and
    travel factors; by Monte Carlo over the need draw), not the needs themselves, and updates a
    two-class posterior (need / not) per product from the customer's own clicks and misses with
    the simulator's true click rates; shows the best posterior mean (greedy)."""

    name = "informed_ceiling"

    def __init__(self, loop: ClosedLoop, draws: int = 300) -> None:
        import random
        from datetime import UTC, datetime

        from cxstream.simulate import population as pop

        super().__init__(loop)
        self.hit = pop.click_probability(pop._NEED_AFFINITY)
        self.miss = pop.click_probability(pop._OTHER_AFFINITY)
        spend = [w for _, _, w in pop.SPEND_CATEGORIES]
        year = datetime.fromtimestamp(loop.config.start_ms / 1000, UTC).year
        rng = random.Random(f"{loop.config.seed}:informed-ceiling")
        self.need: dict[str, dict[str, float]] = {}
        for c in loop.customers:
            age = year - c.birth_year
            band = 0 if age < 30 else (1 if age < 50 else 2)
            habits = [b - a for a, b in zip([0.0, *c.spend_cum[:-1]], c.spend_cum, strict=True)]
            risk = pop.RISK_PROFILES.index(c.risk_profile) - 2
            weights = pop._need_weights(band, c.segment, risk, c.western, habits, spend)
            open_products = [p for p in weights if p not in c.holdings]
            counts = dict.fromkeys(weights, 0)
            for _ in range(draws):  # the same draw as population._preferences
                n = rng.choices(range(len(pop._NEED_COUNT_WEIGHTS)), pop._NEED_COUNT_WEIGHTS)[0]
                personal = {p: weights[p] * rng.lognormvariate(0.0, 0.6) for p in open_products}
                needs: set[str] = set()
                while len(needs) < min(n, len(open_products)):
                    left = [p for p in open_products if p not in needs]
                    needs.add(rng.choices(left, [personal[p] for p in left])[0])
                for p in needs:
                    counts[p] += 1
            self.need[c.customer_id] = {
                p: min(0.99, max(0.01, k / draws)) for p, k in counts.items()
            }

    def _mean(self, product_id: str, history: History | None) -> float:
        prior = self.need[self.customer][product_id]
        clicks, misses = (history or {}).get(product_id, (0, 0))
        need = math.log(prior) + clicks * math.log(self.hit) + misses * math.log(1 - self.hit)
        other = (
            math.log(1 - prior) + clicks * math.log(self.miss) + misses * math.log(1 - self.miss)
        )
        posterior = 1.0 / (1.0 + math.exp(other - need))
        return posterior * self.hit + (1.0 - posterior) * self.miss

    def rank(
        self, x: Features, eligible: Any, k: int, rng: Any, history: History | None = None
    ) -> list[Choice]:
        means = {p: self._mean(p, history) for p in eligible}
        ranked = sorted(eligible, key=lambda p: -means[p])[:k]
        return [Choice(p, means[p], 1.0, "informed") for p in ranked]


def _run_policy(
    name: str, config: SimulationConfig, visits: int, shown: int, settings: Settings
) -> dict[str, Any]:
    loop = ClosedLoop(config, shown=shown)
    reco = settings.reco
    policy: Policy = (
        _Oracle(loop)
        if name == "oracle"
        else _InformedCeiling(loop)
        if name == "informed_ceiling"
        else make_policy(
            name,
            epsilon=reco.epsilon,
            learning_rate=reco.learning_rate,
            prior_strength=reco.prior_strength,
            optimism=reco.optimism,
        )
    )
    rec = LocalRecommender(
        policy,
        k=reco.k,
        seed=config.seed,
        window_ms=round(reco.attribution_window_seconds * 1000),
        feature_threshold=reco.feature_change_threshold,
        model_threshold=reco.model_change_threshold,
    )
    if isinstance(policy, _Oracle):
        serve = rec.maybe_serve

        def oracle_serve(cid: str, now: int) -> None:
            policy.customer = cid
            serve(cid, now)

        rec.maybe_serve = oracle_serve  # type: ignore[method-assign,assignment]
    for event in loop.registrations():
        rec.apply(event.name, event.record)
    impressions = clicks = 0
    feedback: list[tuple[str, dict[str, Any]]] = []
    for customer in loop.visits(visits):
        for event in loop.react(customer, rec.lookup(customer.customer_id)):
            rec.apply(event.name, event.record)
            if event.name == "recommendation_feedback":
                feedback.append((event.name, event.record))
                action = event.record["action"]
                impressions += action == "impression"
                clicks += action == "click"
    low, high = wilson_interval(clicks, impressions)
    visit_low, visit_high = wilson_interval(clicks, visits)
    return {
        "impressions": impressions,
        "ctr_per_visit": clicks / max(visits, 1),
        "ctr_per_visit_low": visit_low,
        "ctr_per_visit_high": visit_high,
        "clicks": clicks,
        "ctr": clicks / max(impressions, 1),
        "ctr_low": low,
        "ctr_high": high,
        "_feedback": feedback,
    }


def _learning_rate(settings: Settings, feedback: list[tuple[str, dict[str, Any]]]) -> float:
    from online_models.reco.learner import Learner

    reco = settings.reco
    learner = Learner(
        make_policy(
            "river_bandit",
            epsilon=reco.epsilon,
            learning_rate=reco.learning_rate,
            prior_strength=reco.prior_strength,
            optimism=reco.optimism,
        ),
        window_ms=round(reco.attribution_window_seconds * 1000),
    )
    x = {"age=mid": 1.0, "risk=moderate": 1.0, "segment=mass": 1.0, "held=savings.flex": 1.0}
    started = time.perf_counter()
    for offset, (_, record) in enumerate(feedback):
        if not learner.already_applied("fb", 0, offset):
            learner.feedback("fb", 0, offset, record, lambda _c: x)
    return len(feedback) / (time.perf_counter() - started)


def _redis_lookup_p99(settings: Settings, n: int = 20_000) -> dict[str, Any]:
    import redis

    from cxstream.redis_connection import sync_redis

    try:
        client = sync_redis(settings, connect_timeout=2)
        client.ping()
    except redis.RedisError as exc:
        return {"lookup_error": str(exc)}
    prefix = f"{settings.kafka.topic_prefix}-bench"
    served = {
        "recommendation_id": "r",
        "items": [{"product_id": f"p{i}", "score": 0.5, "reason": "model"} for i in range(5)],
        "policy": "river_bandit",
        "model_version": "v",
        "served_at": START_MS,
    }
    keys = [f"{prefix}:reco:C{i:08d}" for i in range(1000)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, json.dumps(served), ex=600)
    pipe.execute()
    samples = []
    for i in range(n):
        t = time.perf_counter()
        items = json.loads(client.get(keys[i % len(keys)]) or b"{}")["items"][:5]
        samples.append(time.perf_counter() - t)
        assert len(items) == 5
    client.delete(*keys)
    samples.sort()
    return {
        "lookup_top5_p50_ms": samples[n // 2] * 1000,
        "lookup_top5_p99_ms": samples[int(n * 0.99)] * 1000,
    }


class _Worker:
    """``cxstream worker --processor reco`` as a subprocess, as deployed."""

    def __init__(self, settings: Settings, session_timeout: float, log: Any) -> None:
        kafka, worker = settings.kafka, settings.worker
        self.port = worker.web_port
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")} | {
            "CX_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "CX_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
            "CX_KAFKA__PARTITIONS": str(kafka.partitions),
            "CX_WORKER__APP_ID": worker.app_id,
            "CX_WORKER__WEB_PORT": str(worker.web_port),
            "CX_WORKER__DATA_DIR": str(worker.data_dir),
            "CX_WORKER__SESSION_TIMEOUT_SECONDS": str(session_timeout),
            "CX_RECO__CHECKPOINT_INTERVAL_SECONDS": "1",
            "CX_LOG_LEVEL": "WARNING",
            **section_environment(settings, "redis"),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = Path(sys.executable).with_name("cxstream")
        self.proc = subprocess.Popen(
            [str(command), "worker", "-p", "reco", "--no-ensure-topics"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stats(self) -> dict[str, Any] | None:
        if self.proc is not None and self.proc.poll() is not None:
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace")[-3000:]
            raise ServiceError(f"bench reco: the worker exited ({self.proc.returncode}):\n{tail}")
        try:
            url = f"http://127.0.0.1:{self.port}/v1/stats/reco"
            with urllib.request.urlopen(url, timeout=5) as response:
                data: dict[str, Any] = json.load(response)
                return data
        except OSError:
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _wait(what: str, condition: Any, timeout: float, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise ServiceError(f"bench reco: timed out after {timeout:.0f} s waiting for {what}")


def _quiet(value: Any, seconds: float, timeout: float) -> None:
    """Wait until ``value()`` stayed the same for ``seconds``."""
    deadline = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = value()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return
    raise ServiceError(f"bench reco: still changing after {timeout:.0f} s")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_figures(
    settings: Settings,
    loop: ClosedLoop,
    feedback: list[tuple[str, dict[str, Any]]],
    *,
    session_timeout: float,
) -> dict[str, Any]:
    """Learning rate through a real worker from Kafka, and its restart to serving."""
    from cxstream.bench.sink import raw_consume_decode
    from cxstream.redis_connection import sync_redis
    from streams.codec import build_codec
    from streams.producer import EventProducer
    from streams.topics import delete_topics, ensure_topics, platform_topics

    run_id = uuid.uuid4().hex[:8]
    data_dir = Path(tempfile.mkdtemp(prefix="bench-reco-"))
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"topic_prefix": f"{settings.kafka.topic_prefix}-bench-reco-{run_id}"}
            ),
            "worker": settings.worker.model_copy(
                update={
                    "app_id": f"bench-reco-{run_id}",
                    "web_port": _free_port(),
                    "data_dir": data_dir,
                }
            ),
        }
    )
    specs = platform_topics(settings)
    ensure_topics(settings, specs)
    client = sync_redis(settings)
    prefix = settings.kafka.topic_prefix
    log = tempfile.TemporaryFile()  # noqa: SIM115
    worker = _Worker(settings, session_timeout, log)
    figures: dict[str, Any] = {"worker_session_timeout_s": session_timeout}
    try:
        with EventProducer(settings, build_codec(settings)) as producer:
            for event in loop.registrations():
                producer.produce(event.name, event.record)
            producer.produce_many("recommendation_feedback", [record for _, record in feedback])
            producer.flush()
        n = len(feedback)
        figures["worker_feedback_events"] = n
        worker.start()
        first = _wait(
            "the worker's first learned feedback",
            lambda: (s := worker.stats()) and s["learned_events"] > 0 and time.perf_counter(),
            120,
        )
        assert worker.proc is not None
        cpu_first = _cpu_seconds(worker.proc.pid)
        done = _wait(
            "every feedback event learned",
            lambda: (s := worker.stats()) and s["learned_events"] >= n and time.perf_counter(),
            300,
        )
        cpu_done = _cpu_seconds(worker.proc.pid)
        learned = worker.stats() or {}
        if learned["learned_events"] != n:
            raise ServiceError(f"bench reco: worker learned {learned['learned_events']} of {n}")
        figures["worker_learning_events_per_s"] = n / max(done - first, 1e-9)
        figures["worker_learning_events_per_cpu_s"] = n / max(cpu_done - cpu_first, 1e-9)
        figures["raw_consume_decode_events_per_s"] = raw_consume_decode(
            settings, settings.topic("recommendation_feedback"), n
        )
        figures["worker_learning_share_of_raw"] = (
            figures["worker_learning_events_per_s"] / figures["raw_consume_decode_events_per_s"]
        )
        # every partition checkpointed with everything learned (no save for 2 s: nothing new
        # left to save, the interval is 1 s), then kill -9
        keys = [
            f"{prefix}:reco-checkpoint:{settings.worker.app_id}:{p}"
            for p in range(settings.kafka.partitions)
        ]
        _wait("a checkpoint of every partition", lambda: client.exists(*keys) == len(keys), 30)
        _quiet(lambda: (worker.stats() or {}).get("checkpoints_saved"), 2.0, 30)
        updates_before = learned["model_updates"]
        worker.kill()
        newcomer = f"C9{run_id[:7].upper()}"
        started = time.perf_counter()
        worker.start()
        with EventProducer(settings, build_codec(settings)) as producer:
            record = dict(next(e for e in loop.registrations()).record)
            record.update(event_id=str(uuid.uuid4()), customer_id=newcomer)
            producer.produce("customer_registered", record)
            producer.flush()
        _wait("a list for a new customer", lambda: client.exists(f"{prefix}:reco:{newcomer}"), 120)
        figures["restart_to_serving_s"] = time.perf_counter() - started
        after = worker.stats() or {}
        figures["restart_restored_from_checkpoint"] = after.get("restored_from_checkpoint")
        figures["restart_model_updates_before_kill"] = updates_before
        figures["restart_model_updates_restored"] = after.get("model_updates")
        worker.stop()
    finally:
        worker.stop()
        log.close()
        delete_topics(settings, [spec.name for spec in specs])
        delete_redis_prefix(settings, prefix)
    return figures


def run(
    settings: Settings,
    *,
    customers: int = 2000,
    visits: int = 60_000,
    seed: int = 7,
    shown: int = 1,
    worker: bool = True,
    session_timeout: float = 6.0,
) -> dict[str, Any]:
    config = SimulationConfig(
        start_ms=START_MS, seed=seed, customers=customers, duration_ms=None, max_events=1
    )
    figures: dict[str, Any] = {
        "customers": customers,
        "visits": visits,
        "seed": seed,
        "shown_per_visit": shown,
        "k": settings.reco.k,
        "epsilon": settings.reco.epsilon,
        "learning_rate": settings.reco.learning_rate,
        "prior_strength": settings.reco.prior_strength,
        "optimism": settings.reco.optimism,
        "load_average_1m_start": round(os.getloadavg()[0], 2),
    }
    cpu = time.process_time()
    results = {name: _run_policy(name, config, visits, shown, settings) for name in POLICIES}
    figures["policy_runs_cpu_s"] = round(time.process_time() - cpu, 1)
    for name, r in results.items():
        figures[f"ctr_{name}"] = r["ctr"]
        figures[f"ctr_{name}_ci95"] = f"[{r['ctr_low']:.4f}, {r['ctr_high']:.4f}]"
        figures[f"impressions_{name}"] = r["impressions"]
    for name, r in results.items():
        figures[f"ctr_per_visit_{name}"] = r["ctr_per_visit"]
        figures[f"ctr_per_visit_{name}_ci95"] = (
            f"[{r['ctr_per_visit_low']:.4f}, {r['ctr_per_visit_high']:.4f}]"
        )
    bandit = results["river_bandit"]["ctr"]
    figures["ctr_ratio_vs_contextual_only"] = bandit / max(results["river_contextual"]["ctr"], 1e-9)
    figures["ctr_share_of_oracle"] = bandit / max(results["oracle"]["ctr"], 1e-9)
    figures["ctr_share_of_informed_ceiling"] = bandit / max(
        results["informed_ceiling"]["ctr"], 1e-9
    )
    figures["informed_ceiling_ratio_vs_random"] = results["informed_ceiling"]["ctr"] / max(
        results["random"]["ctr"], 1e-9
    )
    figures["ctr_per_visit_ratio_vs_random"] = results["river_bandit"]["ctr_per_visit"] / max(
        results["random"]["ctr_per_visit"], 1e-9
    )
    figures["ctr_ratio_vs_random"] = bandit / max(results["random"]["ctr"], 1e-9)
    figures["ctr_ratio_vs_popularity"] = bandit / max(results["popularity"]["ctr"], 1e-9)
    figures["oracle_ratio_vs_random"] = results["oracle"]["ctr"] / max(
        results["random"]["ctr"], 1e-9
    )
    figures["learning_events_per_s"] = _learning_rate(
        settings, results["river_bandit"]["_feedback"]
    )
    figures.update(_redis_lookup_p99(settings))
    if worker:
        figures.update(
            worker_figures(
                settings,
                ClosedLoop(config, shown=shown),
                results["river_bandit"]["_feedback"],
                session_timeout=session_timeout,
            )
        )
    figures["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    return figures
