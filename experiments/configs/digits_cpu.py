"""scikit-learn digits (8x8, bundled, no download) on CPU in about a minute or two.

A smoke-scale version of Franz et al.'s MNIST recipe (§5.1, Table 3): the small conv
generator ``digits_small_cpu``, pixel-space Naive-Gauss drift (Eq. (3); Gauss#/Naive-Gauss
had the best FID in Franz Table 2) with per-class kNN kernel-width normalization,
AdamW + warm-up + cosine decay + clipping as in Table 3, but a shorter schedule, a larger
learning rate and 5 classes x 64 samples per step.

    drifting-jax train --config experiments/configs/digits_cpu.py --workdir runs/digits
"""

from drifting_jax.training.images import ImageConfig


def get_config() -> ImageConfig:
  return ImageConfig(
      dataset="digits",
      model="digits_small_cpu",
      objective="naive-gauss",
      bandwidth=0.2,
      num_classes_per_step=5,
      num_pos=64,
      num_gen=64,
      norm_warmup=50,
      learning_rate=1e-3,
      warmup_steps=50,
      num_steps=800,
      ema_decay=0.99,
      log_every=50,
      sample_every=200,
      checkpoint_every=400,
      samples_per_class=10,
  )
