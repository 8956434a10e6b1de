"""Parameter values written for people: in figure labels and signal titles."""

import numpy as np

__all__ = ["format_value"]


def format_value(value):
    """``value`` as a short string: floats in ``%g``, sequences in brackets.

    Examples
    --------
    >>> format_value([0.5, 2.0]), format_value(0.1 + 0.2), format_value("leaf")
    ('[0.5, 2]', '0.3', 'leaf')
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(format_value(v) for v in np.asarray(value).tolist()) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
