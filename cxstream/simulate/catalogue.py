"""The simulated bank's product catalogue (the ids recommenders and frontends talk about)."""

from __future__ import annotations

from typing import NamedTuple


class Product(NamedTuple):
    product_id: str
    product_type: str  # the ``product_type`` enum of product_holding_changed
    title: str


#: every customer holds this one; it is never recommended
CURRENT_ACCOUNT = Product("account.current", "current_account", "Current account")

#: the products the simulated frontends recommend (and customers open, close and hold)
PRODUCTS: tuple[Product, ...] = (
    Product("card.cashback", "credit_card", "Cashback credit card"),
    Product("savings.flex", "savings", "Flexible savings"),
    Product("deposit.12m", "term_deposit", "12-month term deposit"),
    Product("loan.personal", "personal_loan", "Personal loan"),
    Product("mortgage.fixed", "mortgage", "Fixed-rate mortgage"),
    Product("fund.balanced", "fund", "Balanced fund"),
    Product("insurance.travel", "insurance", "Travel insurance"),
    Product("fx.wallet", "fx", "Multi-currency wallet"),
)

PRODUCT_TYPES: dict[str, str] = {p.product_id: p.product_type for p in (CURRENT_ACCOUNT, *PRODUCTS)}
