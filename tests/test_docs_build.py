"""The documentation site builds with every warning an error (docs/conf.py)."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
  for module in ("sphinx", "myst_parser", "furo"):
    pytest.importorskip(module, reason=f"{module} is not installed: pip install -e '.[docs]'")
  out = subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
       str(ROOT / "docs"), str(tmp_path / "html")],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-5000:]
  html = tmp_path / "html"
  for page in ("index.html", "guides/conventions.html", "api/fields.html", "api/index.html"):
    assert (html / page).is_file(), page
  # equations render offline: the vendored MathJax is served, not a CDN copy
  assert (html / "_static" / "mathjax" / "MathJax.js").is_file()
  assert "cdn.jsdelivr" not in (html / "api" / "fields.html").read_text()
