"""Parameter checks shared by every public entry point.

Messages follow scikit-learn's style: they name the parameter, the value
received and what is allowed, so a user can fix the call without reading
the source.
"""

from numbers import Integral, Real

import numpy as np

__all__ = [
    "check_choice",
    "check_fraction",
    "check_int",
    "check_real",
    "check_numeric_dtype",
    "check_random_state",
]


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise ValueError."""
    if value not in choices:
        raise ValueError(
            f"{name}={value!r} is not one of {sorted(map(repr, choices))}."
        )
    return value


def check_fraction(name, value, *, closed_low=False, closed_high=True):
    """Check that ``value`` is a real number in (0, 1] (bounds configurable)."""
    low = "[" if closed_low else "("
    high = "]" if closed_high else ")"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number in {low}0, 1{high}, got {value!r}.")
    ok_low = value >= 0 if closed_low else value > 0
    ok_high = value <= 1 if closed_high else value < 1
    if not (ok_low and ok_high and np.isfinite(value)):
        raise ValueError(f"{name} must be in {low}0, 1{high}, got {value!r}.")
    return float(value)


def check_int(name, value, *, minimum=None, maximum=None):
    """Check that ``value`` is an integer within optional bounds."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}.")
    return int(value)


def check_real(name, value, *, minimum=None, maximum=None, strict_minimum=False):
    """Check that ``value`` is a finite real number within optional bounds."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}.")
    if minimum is not None:
        if strict_minimum and value <= minimum:
            raise ValueError(f"{name} must be > {minimum}, got {value!r}.")
        if not strict_minimum and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}.")
    return float(value)


def check_numeric_dtype(name, dtype):
    """Refuse data that is not real-valued numbers (bool, complex, object, str)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif":
        raise TypeError(
            f"{name} must hold real numbers (integer or float), got dtype {dtype}."
        )
    return dtype


def check_random_state(random_state):
    """Accept None or a non-negative integer seed (what UMAP and HDBSCAN take)."""
    if random_state is None:
        return None
    if isinstance(random_state, np.random.RandomState):
        return random_state
    return check_int("random_state", random_state, minimum=0)
