"""Keywords of functions that take ``**options`` but show them in their signature.

Standard library only: the command line imports the clustering spec, which
uses this, before anything heavy.
"""

import inspect

__all__ = ["keywords_with_defaults"]


def keywords_with_defaults(function, given, names):
    """The keywords ``names`` of a call of ``function``, with the signature's defaults filled in.

    For functions that take ``**options`` but show them in their
    ``__signature__``: a keyword in ``given`` that is not one of ``names``
    is refused as Python refuses an unexpected keyword argument; the values
    themselves are checked by the caller.

    Examples
    --------
    >>> def f(x, **options):
    ...     return keywords_with_defaults(f, options, ("a", "b"))
    >>> f.__signature__ = inspect.signature(lambda x, *, a=1, b=2: None)
    >>> f(0, b=5)
    {'a': 1, 'b': 5}
    >>> f(0, c=1)
    Traceback (most recent call last):
    ...
    TypeError: f() got an unexpected keyword argument 'c'
    """
    for name in given:
        if name not in names:
            raise TypeError(f"{function.__name__}() got an unexpected keyword argument {name!r}")
    signature = inspect.signature(function).parameters
    return {name: given.get(name, signature[name].default) for name in names}
