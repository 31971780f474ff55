"""Kubernetes resource quantities (``100m``, ``0.5``, ``128Mi``, ``1e3``) as exact decimals.

The grammar is apimachinery's ``resource.Quantity``: a signed decimal number, then a binary-SI suffix (``Ki`` … ``Ei``),
a decimal-SI suffix (``n u m k M G T P E``) or a decimal exponent (``e3``, ``E-2``). The official Python client has
``kubernetes.utils.parse_quantity``, but that package is not a dependency here and this is all of it that is needed.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>[KMGTPE]i)|[eE](?P<exponent>[+-]?[0-9]+)|(?P<decimal>[numkMGTPE]?))$"
)
_BINARY_POWERS = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_EXPONENTS = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


class QuantityError(ValueError):
    """Not a Kubernetes quantity."""


def parse_quantity(text: str) -> Decimal:
    """The exact value of a quantity: ``parse_quantity("100m") == Decimal("0.1")``; raises :class:`QuantityError`."""
    match = _QUANTITY.match(text)
    if match is None:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity (e.g. 100m, 0.5, 128Mi, 1Gi)")
    number = Decimal(match["number"])
    # Enough digits that no step rounds: the number's own digits plus at most 19 from 2**60.
    with localcontext(prec=len(text) + 40):
        if match["binary"]:
            return number * (1 << _BINARY_POWERS[match["binary"]])
        exponent = int(match["exponent"]) if match["exponent"] is not None else _DECIMAL_EXPONENTS[match["decimal"]]
        try:
            return number.scaleb(exponent)
        except ArithmeticError:  # an exponent past Decimal's range; Kubernetes caps far below it
            raise QuantityError(f"{text!r} is out of range for a Kubernetes quantity") from None
