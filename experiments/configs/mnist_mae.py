"""Deng et al.'s feature encoder for MNIST on 2 CPU cores: the ``mae_mnist_cpu`` GroupNorm
ResNet (16/32/64 channels, one basic block per stage; stages at 28×28, 14×14, 7×7) trained as a
masked autoencoder — 2×2 patches zeroed with probability 0.5, the full image reconstructed
(Deng et al. App. A.5) — with AdamW, warm-up and cosine decay. Its final metrics include the
kNN accuracy of the frozen pooled features on MNIST test images::

    drifting-jax train --config experiments/configs/mnist_mae.py --workdir runs/mnist_mae

A generator then computes its loss on this encoder's features with
``--set feature_encoder=mae:runs/mnist_mae`` (``experiments/configs/mnist_features_cpu.py``).
"""

from drifting_jax.training import config_dict


def get_config():
  config = config_dict("encoder")
  config.dataset = "mnist"
  config.encoder = "mae_mnist_cpu"
  config.batch_size = 128
  config.learning_rate = 2e-3
  config.warmup_steps = 100
  config.num_steps = 1500
  config.log_every = 50
  config.checkpoint_every = 500
  return config
