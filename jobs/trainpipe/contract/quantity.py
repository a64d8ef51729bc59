"""Kubernetes' resource quantity grammar (resource.Quantity), one place for the spec's validation and
for whatever reads a quantity as a number: a decimal number, then a binary suffix (Ki..Ei), a decimal
one (n, u, m, k, M..E) or an exponent. The exponent comes first in the alternation so that "1E3" is
1000 while "1E" is one exa."""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_SUFFIX = r"(?:[eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])"
# What a spec accepts (the CRD's pattern too): no sign but an optional +, as requests and sizes are never negative.
SPEC_PATTERN = rf"^[+]?{_NUMBER}{_SUFFIX}?$"
_SPEC_QUANTITY = re.compile(SPEC_PATTERN)
_QUANTITY = re.compile(rf"^([+-]?{_NUMBER})({_SUFFIX})?$")
_SCALES: dict[str, Fraction] = {
    "": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
    **{f"{p}i": Fraction(2 ** (10 * n)) for n, p in enumerate("KMGTPE", start=1)},
}


def parse_quantity(value: str | int | float) -> Fraction:
    """A quantity as Kubernetes writes it ("500m", "4Gi", "1e3", "2", 2) as an exact number."""
    text = str(value).strip()
    m = _QUANTITY.match(text)
    if not m:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 2, 500m, 1.5Gi, 1e3)")
    number, suffix = Fraction(m.group(1)), m.group(2) or ""
    if suffix not in _SCALES:  # an exponent
        return number * Fraction(10) ** int(suffix[1:])
    return number * _SCALES[suffix]


def spec_quantity(value: int | str) -> int | str:
    """A spec's quantity as given, checked as the API server checks it (locally too, e.g. `trainpipe run -f`)."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative: a quantity here is a size or an amount of a resource")
        return value
    if not _SPEC_QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 2, 500m, 1.5Gi, 1e3)")
    return value
