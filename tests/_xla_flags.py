"""XLA flags for cheaper compiles in the tests (see ``conftest.py``), for the installed jaxlib."""

from importlib import metadata


def fast_compile_flags() -> str:
  """Flags for XLA's unoptimised CPU backend that the installed jaxlib accepts."""
  flags = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
  try:
    jaxlib = tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
  except (metadata.PackageNotFoundError, ValueError):
    jaxlib = (0, 0)
  # XLA aborts on a flag it does not know: jaxlib 0.11 removed the classic emitters' switch.
  return flags + (" --xla_cpu_use_fusion_emitters=false" if jaxlib < (0, 11) else "")


FAST_COMPILE = fast_compile_flags()
