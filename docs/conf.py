"""Sphinx configuration of the drifting_jax documentation.

Build (warnings are errors): ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
Everything works offline: no intersphinx, and MathJax is served from ``_static``.
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the checkout's package, not an installed copy

import drifting_jax  # noqa: E402

project = "drifting_jax"
author = "drifting_jax contributors"
copyright = "drifting_jax contributors"  # noqa: A001 - Sphinx's name
release = drifting_jax.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_screenshots", "conftest.py", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
myst_update_mathjax = False  # its MathJax 3 options would break the MathJax 2 below

# autodoc: members in source order, type hints in the description, no mocks needed.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields: NamedTuple members are documented once

nitpicky = False

html_theme = "furo"
html_title = f"drifting_jax {release}"
html_static_path = ["_static"]

# Math renders offline: MathJax 2.7.9 (TeX input, CommonHTML output) from Debian's
# libjs-mathjax is vendored in _static/mathjax (the files that configuration loads; see
# _static/mathjax/SOURCE.txt), instead of Sphinx's default CDN copy.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"
mathjax2_config = {"CommonHTML": {"linebreaks": {"automatic": False}},
                   "menuSettings": {"zoom": "None"}, "showMathMenu": False}
