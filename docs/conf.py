"""Sphinx configuration of the drifting_jax documentation.

Build (warnings are errors): ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
Everything works offline: no intersphinx, and MathJax is served from ``_static``.
"""

import pathlib
import re
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
autodoc_typehints_description_target = "documented"  # no bare lists of dataclass fields
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


def _drop_object_base(app, name, obj, options, bases):
  """No "Bases: object" line under every plain class (the empty line is removed below)."""
  del app, name, obj, options
  if list(bases) == [object]:
    bases.clear()


def _remove_empty_bases(app, doctree):
  from docutils import nodes  # noqa: PLC0415
  del app
  for paragraph in list(doctree.findall(nodes.paragraph)):
    if paragraph.astext().strip() == "Bases:":
      paragraph.parent.remove(paragraph)


_SHARED_ENTRY = re.compile(r"^(\s+)([A-Za-z_]\w*(?:, [A-Za-z_]\w*)+):(?=\s|$)")


def _join_shared_entries(app, what, name, obj, options, lines):
  """``b1, b2, eps: ...`` (one entry for several names in Args/Attributes): Sphinx would read
  ``b1, b2,`` as the type of ``eps``; a word joiner instead of the spaces keeps one name."""
  del app, what, name, obj, options
  for i, line in enumerate(lines):
    m = _SHARED_ENTRY.match(line)
    if m:
      lines[i] = m.group(1) + m.group(2).replace(", ", ",\u2060") + line[m.end(2):]


_FLAX_TAIL = re.compile(r",\s*parent=<[^>]*>,\s*name=None\)$")


def _drop_flax_internals(app, what, name, obj, options, signature, return_annotation):
  """Flax modules: no ``parent=<_Sentinel>, name=None`` at the end of every signature."""
  del app, what, name, obj, options
  if signature and _FLAX_TAIL.search(signature):
    signature = _FLAX_TAIL.sub(")", signature)
  return signature, return_annotation


def _skip_dtype_aliases(app, what, name, obj, skip, options):
  """Flax modules' ``dtype``/``param_dtype`` defaults (``jnp.float32``) are documented in
  the class's Attributes, not again as "alias of float32"."""
  del app, what, options
  if name in ("dtype", "param_dtype") and isinstance(obj, type):
    return True
  return skip


def setup(app):
  app.connect("autodoc-process-signature", _drop_flax_internals)
  app.connect("autodoc-skip-member", _skip_dtype_aliases)
  app.connect("autodoc-process-docstring", _join_shared_entries, priority=400)  # before napoleon
  app.connect("autodoc-process-bases", _drop_object_base)
  app.connect("doctree-read", _remove_empty_bases)
