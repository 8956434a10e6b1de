"""Progress reporting that follows HyperSpy's preference."""

import contextlib
import sys

__all__ = ["resolve_show_progressbar", "dask_progress", "stage_bar"]

# One bar at a time: nested calls (fuse extracting features) would draw twice.
_ACTIVE = False


def resolve_show_progressbar(show_progressbar):
    """``None`` means HyperSpy's ``preferences.General.show_progressbar``."""
    if show_progressbar is not None:
        return bool(show_progressbar)
    try:
        from hyperspy.api import preferences

        return bool(preferences.General.show_progressbar)
    except Exception:  # preferences unreadable: stay quiet rather than fail
        return False


@contextlib.contextmanager
def dask_progress(show_progressbar):
    """A dask progress bar around every computation in the block.

    With a ``dask.distributed`` client active, its dashboard shows progress
    and the local-scheduler bar would stay empty, so none is drawn.
    """
    global _ACTIVE
    if _ACTIVE or not resolve_show_progressbar(show_progressbar) or _distributed_client_active():
        yield
        return
    from dask.diagnostics import ProgressBar

    _ACTIVE = True
    try:
        # Computations shorter than a second draw nothing: bars are for long work.
        with ProgressBar(minimum=1.0, out=sys.stderr):
            yield
    finally:
        _ACTIVE = False


def _distributed_client_active():
    if "distributed" not in sys.modules:
        return False  # no client without the package (whose import takes ~0.5 s)
    try:
        from distributed import default_client

        default_client()
        return True
    except Exception:
        return False


def stage_bar(stages, show_progressbar, description):
    """A tqdm bar over named pipeline stages (or a silent stand-in)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=len(stages),
        desc=description,
        disable=not resolve_show_progressbar(show_progressbar),
        unit="stage",
    )
