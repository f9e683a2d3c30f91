"""MNIST with Deng et al.'s feature-space loss on 2 CPU cores.

The drift loss is computed on multi-scale features of a frozen encoder trained as a masked
autoencoder (``experiments/configs/mnist_mae.py``; Deng et al. §3.4, App. A.5): the stage
outputs at 14×14 and 7×7 per location (every location its own drift problem) and their
global mean and std, plus the pixels, each stream with its own kNN kernel-width
normalization, Naive-Gauss per stream, losses summed. The encoder is frozen, so the real
images' streams are computed once for the whole training set (``cache_real_features``,
≈ 1.3 GB) instead of every step. The generator is ``mnist_small_cpu``'s
(3 × 1024 MLP, 3×3 conv read-out), initialized from a pixel-space run of
``mnist_small_cpu`` (a feature step costs ~4–5 pixel steps here, so the pixel phase buys the
coarse shape cheaply and the feature phase refines it), 1,500 feature steps at the pixel
phase's learning rate 1e-3 (3e-4 barely moved the generator). Inception FID-5k 21.45 ± 0.62
over 3 seeds (EXPERIMENTS.md §14, ``feat_loc_ms_lr1e3``): no better than the same phase
on the pixels alone, and far from the papers. Three commands::

    drifting-jax train --config experiments/configs/mnist_mae.py --workdir runs/mnist_mae
    drifting-jax train --config experiments/configs/mnist_small_cpu.py --workdir runs/mnist_pix \\
        --set num_steps=6000
    drifting-jax train --config experiments/configs/mnist_features_cpu.py --workdir runs/mnist_feat

``experiments/mnist_features.py`` runs them (and the ablations) with their Inception FID-5k.
The paths of the encoder and the pixel run are the ``feature_encoder`` and ``init_from``
fields (override them with ``--set``).
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("images")
  config.dataset = "mnist"
  config.model = "mnist_mlp_cpu"
  config.model_overrides = {"readout_kernel": 3, "readout_channels": 4}
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
  config.feature_kwargs = {"stages": ["stage1", "stage2"], "feature_sets": ["loc", "mean_std"],
                           "include_pixels": True}
  config.init_from = "runs/mnist_pix"
  config.cache_real_features = True  # the frozen encoder's streams of the 60k images, once
  config.log_every = 50
  config.sample_every = 500
  config.checkpoint_every = 250
  config.samples_per_class = 10
  return config
