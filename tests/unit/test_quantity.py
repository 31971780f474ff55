"""Kubernetes quantities parse to exact decimals, as apimachinery's ``resource.Quantity`` reads them."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard_components.quantity import QuantityError, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", "0.1"),
        ("0.5", "0.5"),
        ("1", "1"),
        ("1000m", "1"),
        ("2.5", "2.5"),
        (".5", "0.5"),
        ("+3", "3"),
        ("-1m", "-0.001"),
        ("5n", "0.000000005"),
        ("7u", "0.000007"),
        ("32Mi", "33554432"),
        ("1Gi", "1073741824"),
        ("1.5Gi", "1610612736"),
        ("128k", "128000"),
        ("1M", "1000000"),
        ("1E", "1000000000000000000"),  # exa, not an exponent
        ("1Ei", "1152921504606846976"),
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("25e-2", "0.25"),
    ],
)
def test_known_quantities(text: str, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize(
    "text", ["", "Mi", "1mi", "1 Mi", "1.2.3", "1Ki5", "0x10", "1e", "1K", "1Kib", "ten", "1e9999999"]
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_binary_and_decimal_suffixes_are_not_confused() -> None:
    assert parse_quantity("1Gi") > parse_quantity("1G") > parse_quantity("1Mi")
    assert parse_quantity("1024Ki") == parse_quantity("1Mi")
    assert parse_quantity("999m") < parse_quantity("1")


@given(st.integers(0, 10**30), st.sampled_from([("Ki", 2**10), ("Ti", 2**40), ("Ei", 2**60), ("m", Decimal("0.001"))]))
def test_large_numbers_stay_exact(number: int, suffix: tuple[str, int | Decimal]) -> None:
    unit, factor = suffix
    # Compared as fractions: multiplying in the test at Decimal's default 28 digits would round.
    assert Fraction(parse_quantity(f"{number}{unit}")) == number * Fraction(factor)
