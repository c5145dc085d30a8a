"""argparse types for numbers, shared by the `bmsfil` commands and the
harness's: each says what it expected (argparse prints the message)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive_float(text: str) -> float:
    """A finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number, 0 or above."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {text}")
    return value


def capacity_ah(text: str) -> float:
    """A cell's capacity in Ah: above 0, and no more than a cell holds (1000 Ah: else mAh)."""
    value = positive_float(text)
    if value > 1000.0:
        raise argparse.ArgumentTypeError(f"expected a capacity in Ah, up to 1000, got {text} (mAh? write "
                                         f"{value / 1000:g} for {value:g} mAh)")
    return value


def at_least(low: int) -> Callable[[str], int]:
    """A whole number no smaller than `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected at least {low}, got {value}")
        return value

    return parse
