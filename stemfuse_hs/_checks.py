"""Checks of HyperSpy signals shared by every stage: one home each.

A leaf module: it imports nothing from this package, so any module
(extractors, fusion, clustering, plots, the CLI) can use it without making
an import circle. The callers keep their own wording of the error (tests
and users rely on it); what is decided here is *what* counts as a signal,
as the same scan and as valid block weights.
"""

import numpy as np

__all__ = ["is_signal", "require_signal", "TRANSPOSED_HINT", "scan_mismatch", "check_same_scan", "check_weights"]

#: Appended to a scan mismatch when one navigation shape is the other reversed.
TRANSPOSED_HINT = (
    " The second looks transposed (rows and columns swapped): use .T on its navigation, "
    "e.g. signal.transpose(signal_axes=...)."
)


def is_signal(obj):
    """True for any HyperSpy signal (eager or lazy, of any signal type).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy.signals import Signal1D
    >>> is_signal(Signal1D(np.zeros((2, 3)))), is_signal(np.zeros(3))
    (True, False)
    """
    from hyperspy.signals import BaseSignal

    return isinstance(obj, BaseSignal)


def require_signal(obj, message):
    """``obj`` if it is a HyperSpy signal, else TypeError with ``message``.

    Parameters
    ----------
    obj : object
    message : str
        The caller's message; ``{type}`` in it becomes the name of the type
        given, e.g. ``"plot_x expects a HyperSpy signal, got {type}."``.

    Returns
    -------
    hyperspy.signal.BaseSignal

    Examples
    --------
    >>> require_signal([1, 2], "f expects a HyperSpy signal, got {type}.")
    Traceback (most recent call last):
    ...
    TypeError: f expects a HyperSpy signal, got list.
    """
    if not is_signal(obj):
        raise TypeError(message.format(type=type(obj).__name__))
    return obj


def scan_mismatch(shape, reference):
    """None if two navigation shapes are the same scan, else the hint to add.

    Two signals are of the same scan when their navigation shapes are
    equal, axis for axis: the strictest rule, and the only one under which
    position ``i`` of one is position ``i`` of the other without guessing.
    A shape that is the other reversed (and differs from it) is a scan read
    with rows and columns swapped: the hint (:data:`TRANSPOSED_HINT`) says
    so; otherwise the hint is empty.

    Parameters
    ----------
    shape, reference : sequence of int
        Navigation shapes (HyperSpy's order, as ``axes_manager.navigation_shape``).

    Returns
    -------
    str or None

    Examples
    --------
    >>> scan_mismatch((4, 6), (4, 6)) is None
    True
    >>> scan_mismatch((6, 4), (4, 6)) == TRANSPOSED_HINT, scan_mismatch((5,), (4, 6))
    (True, '')
    """
    shape, reference = tuple(int(s) for s in shape), tuple(int(s) for s in reference)
    if shape == reference:
        return None
    return TRANSPOSED_HINT if tuple(reversed(shape)) == reference else ""


def check_same_scan(shape, reference, message):
    """Refuse two navigation shapes that are not the same scan (:func:`scan_mismatch`).

    Parameters
    ----------
    shape, reference : sequence of int
    message : str
        The caller's message; the transposition hint, if any, is appended.

    Raises
    ------
    ValueError
        ``message`` plus the hint.

    Examples
    --------
    >>> check_same_scan((6, 4), (4, 6), "f: the scans differ.")
    Traceback (most recent call last):
    ...
    ValueError: f: the scans differ. The second looks transposed (rows and columns swapped): use .T on its navigation, e.g. signal.transpose(signal_axes=...).
    """
    hint = scan_mismatch(shape, reference)
    if hint is not None:
        raise ValueError(message + hint)


def check_weights(weights, n_blocks, what="block"):
    """Block weights as a list of floats: one finite, non-negative number a block, not all zero.

    Parameters
    ----------
    weights : sequence of float
    n_blocks : int
        How many there must be.
    what : str, default "block"
        What one weight is for, in the messages ("signal" for :func:`stemfuse_hs.fuse`).

    Returns
    -------
    list of float

    Raises
    ------
    TypeError
        If ``weights`` is not a sequence of numbers.
    ValueError
        For the wrong number of weights, or weights that are negative, not
        finite or all zero.

    Examples
    --------
    >>> check_weights((1, 0.5), 2)
    [1.0, 0.5]
    >>> check_weights([0, 0], 2)
    Traceback (most recent call last):
    ...
    ValueError: weights must be finite, non-negative and not all zero, got [0.0, 0.0].
    """
    message = f"weights must be a sequence of numbers, one per {what}, got {weights!r}."
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
        raise TypeError(message)
    try:
        values = [float(w) for w in np.asarray(weights, dtype=np.float64).ravel()]
    except (TypeError, ValueError):
        raise TypeError(message) from None
    if len(values) != n_blocks:
        raise ValueError(f"weights has {len(values)} values for {n_blocks} blocks; give one per block.")
    if not all(np.isfinite(w) and w >= 0 for w in values) or not any(w > 0 for w in values):
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {values}.")
    return values
