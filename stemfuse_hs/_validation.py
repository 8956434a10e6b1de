"""Parameter checks shared by every public entry point.

Messages follow scikit-learn's style: they name the parameter, the value
received and what is allowed, so a user can fix the call without reading
the source.
"""

from numbers import Integral, Real

import numpy as np

__all__ = [
    "NAN_POLICIES",
    "check_array",
    "check_bool",
    "check_choice",
    "check_n_jobs",
    "check_nan_policy",
    "check_optional_bool",
    "check_scan_shape",
    "check_seed",
    "check_fraction",
    "check_int",
    "check_real",
    "check_numeric_dtype",
    "check_random_state",
]


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise ValueError."""
    # Compared one by one with ``is``/``==`` on plain scalars: ``value in
    # choices`` with an array for ``value`` raises numpy's ambiguous-truth error.
    if not any(_same(value, c) for c in choices):
        raise ValueError(
            f"{name}={value!r} is not one of {', '.join(sorted(map(repr, choices)))}."
        )
    return value


def _same(value, choice):
    if value is choice:
        return True
    if isinstance(choice, str):
        return isinstance(value, str) and value == choice
    try:
        return bool(value == choice)
    except (TypeError, ValueError):
        return False


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


def check_bool(name, value):
    """Check that ``value`` is a bool (numpy's included), not a truthy stand-in."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_optional_bool(name, value):
    """``None`` or a bool (``show_progressbar``: None means the preference)."""
    if value is None:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True, False or None, got {value!r}.")
    return bool(value)


def check_n_jobs(n_jobs):
    """joblib's convention: a positive count, or -1 for all cores (-2 all but one ...)."""
    n_jobs = check_int("n_jobs", n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs must be a positive number of threads or negative (-1: all cores), got 0.")
    return n_jobs


def check_seed(random_state):
    """``None`` or a non-negative integer seed (recorded in the results' metadata)."""
    if random_state is None:
        return None
    if isinstance(random_state, bool) or not isinstance(random_state, Integral):
        raise TypeError(f"random_state must be None or a non-negative integer seed, got {random_state!r}.")
    return check_int("random_state", random_state, minimum=0)


#: What extractors and the fusion do with positions holding NaN or inf.
NAN_POLICIES = ("raise", "exclude")


def check_nan_policy(nan_policy):
    """``"raise"`` or ``"exclude"``."""
    if not isinstance(nan_policy, str):
        raise TypeError(f"nan_policy must be one of {list(NAN_POLICIES)}, got {nan_policy!r}.")
    return check_choice("nan_policy", nan_policy, NAN_POLICIES)


def check_scan_shape(scan_shape):
    """A tuple of positive integers (navigation shape in array order)."""
    if isinstance(scan_shape, (str, bytes)) or not hasattr(scan_shape, "__iter__"):
        raise TypeError(f"scan_shape must be a tuple of positive integers, got {scan_shape!r}.")
    shape = tuple(scan_shape)
    for size in shape:
        if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
            raise ValueError(f"scan_shape must be a tuple of positive integers, got {scan_shape!r}.")
    return tuple(int(s) for s in shape)


def check_array(name, array, *, ndim=None, finite=False):
    """Check the dimension and dtype of an array (numpy or dask) and return it.

    ``finite=True`` also refuses NaN and inf; only for small, in-memory
    arrays (it reads every value).
    """
    if not hasattr(array, "dtype") or not hasattr(array, "shape"):
        try:
            array = np.asarray(array)
        except Exception:  # ragged lists and other objects numpy cannot hold
            raise TypeError(f"{name} must be an array of numbers, got {type(array).__name__}.") from None
    check_numeric_dtype(name, array.dtype)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {tuple(array.shape)}.")
    if finite and not np.all(np.isfinite(np.asarray(array))):
        bad = int((~np.isfinite(np.asarray(array))).sum())
        raise ValueError(f"{name} holds {bad} NaN or infinite values; only finite values are allowed.")
    return array

