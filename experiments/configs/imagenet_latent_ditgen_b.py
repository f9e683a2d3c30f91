"""Secretly-SM App. G.1-G.2 / Table 2 (``latent_ablation``): DiTGen-B/2 on ImageNet latents.

**Needs a pod and a latent dataset.** The paper trains on 16 H100s for 30,000 steps on
ImageNet-256 encoded by the Stable Diffusion VAE (32x32x4 latents). Provide the latents as
``npz`` with ``images [N, 32, 32, 4]`` scaled into [-1, 1] and ``labels [N]`` (or pass an
in-memory ``Dataset`` to ``drifting_jax.training.train(..., dataset=...)``), and launch one process per host
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
``drifting_jax.models.encoders.from_flax``; ``feature_encoder="random_conv"`` is only a
random stand-in).
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("images")
  config.dataset = "npz:data/imagenet256_sdvae_latents.npz"
  config.model = "ditgen_b2"
  config.dtype = "bfloat16"
  config.objective = "drifting-laplace"
  config.bandwidth = 0.05
  config.objective_kwargs = {"official": True, "temperatures": (0.02, 0.05, 0.2)}
  config.num_classes_per_step = 1024
  config.num_pos = 64
  config.num_gen = 64
  config.kernel_width_norm = False
  config.norm_warmup = 0
  config.learning_rate = 2e-4
  config.b1 = 0.9
  config.b2 = 0.95
  config.eps = 1e-8
  config.weight_decay = 0.01
  config.warmup_steps = 5000
  config.lr_schedule = "constant"
  config.grad_clip = 2.0
  config.num_steps = 30000
  config.ema_decay = 0.999
  config.guidance = True
  config.cfg_min = 1.0
  config.cfg_max = 4.0
  config.cfg_power = 3.0
  config.num_uncond = 16
  config.memory_bank = True
  config.bank_pos_size = 128
  config.bank_neg_size = 1000
  config.bank_push = 64
  config.parallel = "mesh"
  config.log_every = 100
  config.sample_every = 2500
  config.samples_per_class = 8
  config.sample_cfg_scale = 2.0
  config.checkpoint_every = 2500
  config.max_to_keep = 3
  return config
