"""Doctest set-up for the package modules (tests/ has its own conftest)."""

import matplotlib

matplotlib.use("Agg")


def pytest_configure(config):
    import hyperspy.api as hs

    hs.preferences.General.show_progressbar = False
