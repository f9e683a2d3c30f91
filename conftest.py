"""Runs the ```python blocks of README.md and docs/**/*.md as tests (sybil).

Each Markdown file is one test, ``<file>::python-blocks``: its blocks run in order in one
namespace, as a reader would run them. ``<!-- skip: next "reason" -->`` skips the next
block and ``<!-- invisible-code-block: python ... -->`` runs code the reader does not see;
```bash blocks are not run. One test per file (rather than sybil's test per block) keeps a
file's blocks in one process under pytest-xdist.

One conftest at the root collects both: a second, docs/conftest.py, would be imported as a
second top-level ``conftest`` module and replace tests/conftest.py in ``sys.modules``, from
which the tests import their helpers.
"""

import importlib.util
import os
import pathlib
import traceback
import unittest

import pytest

ROOT = pathlib.Path(__file__).resolve().parent

try:
  from sybil import Sybil
  from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
except ImportError:  # sybil is in the `test` extra; without it the snippets are not collected
  Sybil = None


def _fast_compile() -> None:
  """The test suite's cheaper XLA compiles (tests/_xla_flags.py), unless already set."""
  if "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", ""):
    return
  spec = importlib.util.spec_from_file_location("_xla_flags", ROOT / "tests" / "_xla_flags.py")
  flags = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(flags)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags.FAST_COMPILE).strip()


def _is_snippet_file(path: pathlib.Path) -> bool:
  if path.suffix != ".md" or not path.is_relative_to(ROOT):
    return False
  parts = path.relative_to(ROOT).parts
  return parts == ("README.md",) or (parts[0] == "docs" and parts[1] != "_build")


class SnippetError(Exception):
  """A python block of a Markdown file raised."""


class PythonBlocks(pytest.Item):
  """Every ```python block of one Markdown file, run in order in one namespace."""

  def runtest(self) -> None:
    _fast_compile()
    ran, skipped = 0, []
    for example in self.parent.document.examples():
      try:
        example.evaluate()
      except unittest.SkipTest as skip:
        skipped.append(f"line {example.line}: {skip}")
      except Exception as error:
        raise SnippetError(f"{self.path.name}, the block at line {example.line}: "
                           f"{type(error).__name__}: {error}") from error
      else:
        ran += 1
    if skipped:
      self.add_report_section("call", "skipped blocks", "\n".join(skipped))
    if ran == 0 and skipped:
      pytest.skip(f"every block of {self.path.name} is skipped")

  def repr_failure(self, excinfo, style=None):
    if isinstance(excinfo.value, SnippetError):  # the block's own traceback, not pytest's
      cause = excinfo.value.__cause__
      return f"{excinfo.value}\n\n" + "".join(traceback.format_exception(cause))
    return super().repr_failure(excinfo, style)

  def reportinfo(self):
    return self.path, 0, f"{self.path.name}: python blocks"


class MarkdownFile(pytest.File):
  def collect(self):
    sybil = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()], path=str(ROOT),
                  patterns=["*.md"])
    self.document = sybil.parse(self.path)
    if any(True for _ in self.document.examples()):  # pages without python blocks: no test
      yield PythonBlocks.from_parent(self, name="python-blocks")


def pytest_collect_file(file_path, parent):
  if Sybil is not None and _is_snippet_file(file_path):
    return MarkdownFile.from_parent(parent, path=file_path)
  return None


def pytest_report_header(config):
  if Sybil is None:
    return "sybil is not installed: the README and docs snippets are not collected"
  return None
