"""Sphinx configuration of the drifting_jax documentation.

Build (warnings are errors): ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
Everything builds offline: no intersphinx, and MathJax is served from ``_static`` when a
local copy is present (see ``mathjax_path`` below).
"""

import os
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

# MathJax offline: a vendored copy (Debian's libjs-mathjax, MathJax 2) in _static/mathjax,
# if present; Sphinx's default CDN URL otherwise.
if (pathlib.Path(__file__).parent / "_static" / "mathjax" / "MathJax.js").exists():
  mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML"
