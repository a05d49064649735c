"""The retail bank's recommendable products and the eligibility rules applied before ranking.

Product ids are those of the simulated bank (:mod:`cxstream.simulate.catalogue`; a unit test
keeps the two aligned). Rules are regulatory/suitability rules, not preferences: a product a
customer may not be offered is never ranked, whatever its score.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

#: risk profiles from the suitability questionnaire, least to most risk-tolerant
RISK_PROFILES = ("conservative", "moderate", "balanced", "growth", "aggressive")


@dataclass(frozen=True, slots=True)
class CatalogueProduct:
    product_id: str
    product_type: str
    title: str
    min_age: int = 18
    max_age: int = 200
    #: lowest risk profile the product suits (``None``: any)
    min_risk: str | None = None
    #: products whose holders may not be offered this one (affordability)
    excluded_if_held: frozenset[str] = frozenset()

    def ineligibility(
        self, *, age: int | None, risk_profile: str | None, holdings: Collection[str]
    ) -> str | None:
        """Why the customer may not be offered this product, or ``None`` when they may."""
        if self.product_id in holdings:
            return "already_held"
        if age is None:
            return "age_unknown"
        if not self.min_age <= age <= self.max_age:
            return "age"
        if self.min_risk is not None:
            if risk_profile not in RISK_PROFILES:
                return "risk_unknown"
            if RISK_PROFILES.index(risk_profile) < RISK_PROFILES.index(self.min_risk):
                return "risk_profile"
        if self.excluded_if_held & set(holdings):
            return "conflicting_holding"
        return None


PRODUCTS: tuple[CatalogueProduct, ...] = (
    CatalogueProduct("card.cashback", "credit_card", "Cashback credit card", max_age=75),
    CatalogueProduct("savings.flex", "savings", "Flexible savings"),
    CatalogueProduct("deposit.12m", "term_deposit", "12-month term deposit"),
    CatalogueProduct(
        "loan.personal",
        "personal_loan",
        "Personal loan",
        min_age=21,
        max_age=65,
        excluded_if_held=frozenset({"mortgage.fixed"}),
    ),
    CatalogueProduct("mortgage.fixed", "mortgage", "Fixed-rate mortgage", min_age=21, max_age=60),
    CatalogueProduct("fund.balanced", "fund", "Balanced fund", min_risk="balanced"),
    CatalogueProduct("insurance.travel", "insurance", "Travel insurance", max_age=80),
    CatalogueProduct("fx.wallet", "fx", "Multi-currency wallet"),
)

BY_ID: dict[str, CatalogueProduct] = {p.product_id: p for p in PRODUCTS}
PRODUCT_IDS: tuple[str, ...] = tuple(BY_ID)


def eligible_products(
    *,
    age: int | None,
    risk_profile: str | None,
    holdings: Collection[str],
    personalisation_consent: bool,
) -> list[str]:
    """Ids of the products the customer may be offered (none without personalisation consent)."""
    if not personalisation_consent:
        return []
    return [
        p.product_id
        for p in PRODUCTS
        if p.ineligibility(age=age, risk_profile=risk_profile, holdings=holdings) is None
    ]
