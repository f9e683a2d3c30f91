"""The core fuzz (``tests/fuzz_counts.py``) in the suite: zero silent answers, zero crashes.

Every public function of ``drifting_jax`` and ``drifting_jax.metrics`` is called on one valid
problem and on its generated bad variants — NaN / inf entries, points scaled to 1e19 / 1e30,
zero rows, a wrong rank and a complex or string dtype in every array argument, integer
inputs, every scalar option set to NaN, ±inf, huge, tiny, negative, zero, a float for an int,
a string, a bool and None (validity per option from its documented meaning), the cases'
hand-written wrong options, invalid traced hyperparameters and NaN inputs under ``jit``.
Each call must give the correct answer (float32 against the float64 call where there is one)
or a ``ValueError`` naming the argument. ``python tests/fuzz_counts.py`` prints the table of
counts by class.
"""

from __future__ import annotations

import collections

import pytest

import fuzz_counts

CASES = fuzz_counts.cases()
BAD = ("silent-nan", "silent-finite-wrong", "crash", "error-on-valid")


def test_every_public_function_is_fuzzed():
  covered = {c.name.split("/")[0] for c in CASES}
  missing = [n for n in fuzz_counts.public_callables() if n not in covered and n != "checked"]
  assert not missing, f"public functions without a fuzz case: {missing}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_silent_answer(case):
  counts = collections.Counter()
  failures = []
  for cls, desc, outcome, detail in fuzz_counts.evaluate(case):
    counts[cls, outcome] += 1
    if outcome in BAD:
      failures.append(f"{cls} {desc} -> {outcome} {detail}")
  assert counts["valid", "ok-correct"] == 1, dict(counts)
  assert not failures, "\n".join(failures)
