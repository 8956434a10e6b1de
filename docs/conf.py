"""Sphinx configuration of the stemfuse_hs documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Nothing here downloads anything: there is no intersphinx mapping, so
references to numpy, HyperSpy, pyxem or exspy objects stay plain text.
"""

import os
import sys
import warnings

import matplotlib

# Figures are drawn at build time, without a display.
matplotlib.use("Agg")

sys.path.insert(0, os.path.abspath("_ext"))

import stemfuse_hs  # noqa: E402  (installed, editable or not)

# -- Project -----------------------------------------------------------------
project = "stemfuse_hs"
author = "stemfuse_hs developers"
copyright = "stemfuse_hs developers"
release = stemfuse_hs.__version__
version = ".".join(release.split(".")[:2])

# -- General -------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
    "stemfuse_docs",  # docs/_ext: tables of the synthetic datasets, read from the code
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "obj"
# Unresolved cross-references (numpy, HyperSpy, pyxem ... without intersphinx)
# stay plain text instead of failing the build.
nitpicky = False

# -- autodoc / autosummary -----------------------------------------------------
autosummary_generate = True
# Follow each package's __all__: it names the public objects, wherever they
# are defined (stemfuse_hs.features re-exports from its submodules).
autosummary_ignore_module_all = False
autodoc_default_options = {
    "members": True,
    # Our signal classes subclass HyperSpy/pyxem signals with hundreds of
    # methods; only what this package adds is documented here.
    "inherited-members": False,
}
autodoc_member_order = "bysource"
autoclass_content = "class"

# -- numpydoc ------------------------------------------------------------------
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -- matplotlib plot directive -------------------------------------------------
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_include_source = True
plot_pre_code = "import numpy as np\nimport matplotlib.pyplot as plt\n"

# HyperSpy 2.x warns (VisibleDeprecationWarning) about its own internal
# imports when pyxem and exspy load. These are Python warnings, not Sphinx
# warnings (they cannot fail the build); silenced only to keep the log
# readable. Nothing else is filtered.
warnings.filterwarnings("ignore", message=r"Importing `.*` from `hyperspy\.", module=r"hyperspy\.")
warnings.filterwarnings("ignore", message=r"`_get_block_pattern` has moved", module=r"hyperspy\.")

# -- HTML ----------------------------------------------------------------------
try:
    import pydata_sphinx_theme  # noqa: F401

    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_with_keys": False,
        "show_toc_level": 2,
        "secondary_sidebar_items": ["page-toc"],
    }
except ImportError:  # the [docs] extra not installed: still build
    html_theme = "alabaster"
    html_theme_options = {}

html_title = f"stemfuse_hs {release}"
