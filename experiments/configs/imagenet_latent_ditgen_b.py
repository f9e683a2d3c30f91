"""Secretly-SM App. G.1-G.2 / Table 2 (``latent_ablation``): DiTGen-B/2 on ImageNet latents.

**Needs a pod and a latent dataset.** The paper trains on 16 H100s for 30,000 steps on
ImageNet-256 encoded by the Stable Diffusion VAE (32x32x4 latents). Provide the latents as
``npz`` with ``images [N, 32, 32, 4]`` scaled into [-1, 1] and ``labels [N]`` (or pass an
in-memory ``Dataset`` to ``train_images(..., dataset=...)``), and launch one process per host
with ``DRIFTING_JAX_COORDINATOR`` / ``DRIFTING_JAX_NUM_PROCESSES`` / ``DRIFTING_JAX_PROCESS_ID``
(or ``DRIFTING_JAX_DISTRIBUTED=1`` on a managed cluster). The 1024 class groups per step
are split over the devices of the mesh (1024 must be divisible by the device count).

Table 2: AdamW (β1 = 0.9, β2 = 0.95, ε = 1e-8), weight decay 0.01, peak lr 2e-4, linear
warm-up 5,000 steps then constant, clipping 2.0, 30,000 steps; 1024 labels per step, 64
generated samples per label; memory bank with 128 positives per class, a shared 1000-slot
unconditional bank, 64 pushes per step, 64 positives / 16 unconditional negatives per label;
CFG scale sampled on [1, 4] with power-law exponent 3 (unconditional-only fraction 0); EMA
0.999. The drift operator is the exponential-kernel baseline of Deng et al. (Table 1, first
row) — their loss with temperatures (0.02, 0.05, 0.2), which carries the CFG-weighted
unconditional negatives. Deng's loss normalizes feature scales itself, so the kNN kernel-
width normalization of Franz et al. is off. Generator compute in bfloat16.

Not reproduced here: the loss is computed on the latents themselves; the paper uses the
multi-scale features of a frozen MAE ResNet-18 (plug one in through
``drifting_jax.training.features.from_flax``; ``feature_encoder="random_conv"`` is only a
random stand-in).
"""

from drifting_jax.training.images import ImageConfig


def get_config() -> ImageConfig:
  return ImageConfig(
      dataset="npz:data/imagenet256_sdvae_latents.npz",
      model="ditgen_b2",
      dtype="bfloat16",
      objective="drifting-laplace",
      bandwidth=0.05,
      objective_kwargs={"official": True, "temperatures": (0.02, 0.05, 0.2)},
      num_classes_per_step=1024,
      num_pos=64,
      num_gen=64,
      kernel_width_norm=False,
      norm_warmup=0,
      learning_rate=2e-4,
      b1=0.9,
      b2=0.95,
      eps=1e-8,
      weight_decay=0.01,
      warmup_steps=5000,
      lr_schedule="constant",
      grad_clip=2.0,
      num_steps=30000,
      ema_decay=0.999,
      guidance=True,
      cfg_min=1.0,
      cfg_max=4.0,
      cfg_power=3.0,
      num_uncond=16,
      memory_bank=True,
      bank_pos_size=128,
      bank_neg_size=1000,
      bank_push=64,
      parallel="mesh",
      log_every=100,
      sample_every=2500,
      samples_per_class=8,
      sample_cfg_scale=2.0,
      checkpoint_every=2500,
      max_to_keep=3,
  )
