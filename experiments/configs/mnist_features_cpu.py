"""MNIST with Deng et al.'s feature-space loss on 2 CPU cores: the project's best CPU recipe.

The drift loss is computed on multi-scale features of a frozen encoder trained as a masked
autoencoder (``experiments/configs/mnist_mae.py``; Deng et al. §3.4, App. A.5): the stage
outputs at 14×14 and 7×7 per location (every location its own drift problem), their global
mean and std and their 2×2 patch mean and std (4×4 divides neither map), plus the pixels;
each stream with its own kNN kernel-width normalization, Naive-Gauss per stream, losses
summed. The encoder is frozen, so the real images' streams are computed once for the whole
training set (``cache_real_features``) instead of every step. The generator is the 3 × 1024
MLP with a two-layer conv read-out (8 maps, a hidden 3×3 convolution with SiLU, the 3×3
filter), initialized from a pixel-space run of it (``experiments/configs/mnist_readout2_cpu.py``,
6,000 steps: a feature step costs several pixel steps here, so the pixel phase buys the
coarse shape cheaply and the feature phase refines it); 1,500 feature steps at lr 1e-3.
Inception FID-5k and its controls (the same phase on the pixels alone, the pixel-space
generator at the same wall clock) in EXPERIMENTS.md §14, recipe ``feat_patch_readout2`` —
far from the papers still. The commands::

    drifting-jax train --config experiments/configs/mnist_mae.py --workdir runs/mnist_mae
    drifting-jax train --config experiments/configs/mnist_readout2_cpu.py --workdir runs/mnist_pix
    drifting-jax train --config experiments/configs/mnist_features_cpu.py --workdir runs/mnist_feat
    drifting-jax eval --workdir runs/mnist_feat --fid inception --num-samples 5000

``experiments/mnist_features.py`` runs them (and the ablations) with their Inception FID-5k.
The paths of the encoder and the pixel run are the ``feature_encoder`` and ``init_from``
fields (override them with ``--set``; the pixel run must have trained this generator).
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("images")
  config.dataset = "mnist"
  config.model = "mnist_mlp_cpu"
  # the generator of the pixel run it starts from (mnist_readout2_cpu.py)
  config.model_overrides = {"readout_kernel": 3, "readout_channels": 8, "readout_depth": 2}
  config.objective = "naive-gauss"
  config.bandwidth = 0.2
  config.num_classes_per_step = 5
  config.num_pos = 96
  config.num_gen = 96
  config.norm_warmup = 100
  config.learning_rate = 1e-3
  config.warmup_steps = 100
  config.num_steps = 1500
  config.ema_decay = 0.999
  config.feature_encoder = "mae:runs/mnist_mae"
  config.feature_kwargs = {"stages": ["stage1", "stage2"],
                           "feature_sets": ["loc", "mean_std", "patch_mean_std"],
                           "patch_sizes": [2], "include_pixels": True}
  config.init_from = "runs/mnist_pix"
  config.cache_real_features = True  # the frozen encoder's streams of the 60k images, once
  config.log_every = 50
  config.sample_every = 500
  config.checkpoint_every = 250
  config.samples_per_class = 10
  return config
