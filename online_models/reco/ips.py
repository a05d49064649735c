"""Offline evaluation of a policy from logged recommendations, by inverse propensity scoring.

Each logged decision is the first-ranked item of a served list: the context the logging policy
saw, the products it could choose from, the product it chose with its logged propensity, and
whether it was clicked. The value of a target policy pi is estimated by
``mean(r * pi(a | x) / p)`` (IPS) and by the self-normalised variant (SNIPS), with a normal
confidence interval from the per-decision terms. Unbiased when the logged propensities are the
true ones and every action pi can take had a propensity > 0 (the bandit's exploration).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    x: Mapping[str, float]
    eligible: Sequence[str]
    product_id: str
    propensity: float
    reward: float


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    low: float
    high: float
    snips: float
    n: int
    #: effective sample size of the importance weights
    ess: float


def ips_estimate(
    logs: Iterable[LoggedDecision],
    target: Callable[[LoggedDecision], float],
    *,
    z: float = 1.96,
) -> Estimate:
    """IPS and SNIPS estimates of the reward of ``target`` (``target(d)`` = pi(d.product_id))."""
    terms: list[float] = []
    weights: list[float] = []
    for d in logs:
        if d.propensity <= 0:
            raise ValueError(f"logged decision for {d.product_id!r} has propensity {d.propensity}")
        w = target(d) / d.propensity
        weights.append(w)
        terms.append(w * d.reward)
    n = len(terms)
    if n == 0:
        return Estimate(0.0, 0.0, 0.0, 0.0, 0, 0.0)
    mean = math.fsum(terms) / n
    var = math.fsum((t - mean) ** 2 for t in terms) / max(n - 1, 1)
    half = z * math.sqrt(var / n)
    total_w = math.fsum(weights)
    snips = math.fsum(terms) / total_w if total_w else 0.0
    ess = total_w**2 / math.fsum(w * w for w in weights) if total_w else 0.0
    return Estimate(mean, mean - half, mean + half, snips, n, ess)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return centre - half, centre + half
