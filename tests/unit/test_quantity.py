"""Kubernetes' quantity grammar, one for both sides: what a spec accepts is what parses, and parses exactly."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.quantity import SPEC_PATTERN, parse_quantity


@pytest.mark.parametrize("text,value", [
    ("2", 2), (2, 2), ("500m", Fraction(1, 2)), (".5", Fraction(1, 2)), ("+1.5", Fraction(3, 2)),
    ("100n", Fraction(1, 10**7)), ("250u", Fraction(1, 4000)), ("1k", 1000), ("4Gi", 4 * 2**30),
    ("1.5Mi", 3 * 2**19), ("2G", 2 * 10**9), ("1E", 10**18), ("1Ei", 2**60),
    ("1e3", 1000), ("1E3", 1000), ("5e-1", Fraction(1, 2)),
])
def test_quantities_parse_exactly(text, value) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Gi", "1.2.3", "1 Gi", "1gi", "1e", "1Ki2", "-"])
def test_malformed_quantities_are_refused(text) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


@pytest.mark.parametrize("text", ["2", "500m", ".5", "+1.5", "4Gi", "1.5Mi", "1E", "1e3", "1Ki2", "1gi", "4Ki", "-1", "1K"])
def test_a_spec_accepts_exactly_the_non_negative_quantities_that_parse(text: str) -> None:
    try:
        parses = parse_quantity(text) >= 0
    except ValueError:
        parses = False
    assert bool(re.match(SPEC_PATTERN, text)) is parses
    if not parses:
        with pytest.raises(ValueError, match="resources"):
            PipelineSpec.model_validate({"data": {"dir": "d"}, "stages": {"rank": {"resources": {"limits": {"memory": text}}}}})
