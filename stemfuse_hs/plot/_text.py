"""User-provided text (titles, axis names and units) drawn literally by matplotlib."""

__all__ = ["literal"]

#: Characters a figure's text may hold: printable ones, and line breaks.
_KEEP_CONTROL = "\n"


def literal(text):
    """``text`` as matplotlib shows it literally.

    Titles from files hold ``$`` (``"Fe$_3$O$_4$"``) or TeX-like commands
    (``\\frac``) that matplotlib would parse as mathtext, failing on
    ``savefig`` when they are not valid mathtext (and silently changing the
    text when they are). Every ``$`` is escaped, so no mathtext is entered,
    and control characters (NUL, which a C string may leave) are dropped.

    Examples
    --------
    >>> literal("Fe$_3$O$_4$ \\\\frac")
    'Fe\\\\$_3\\\\$O\\\\$_4\\\\$ \\\\frac'
    """
    text = "".join(c for c in str(text) if c.isprintable() or c in _KEEP_CONTROL)
    return text.replace("$", r"\$")
