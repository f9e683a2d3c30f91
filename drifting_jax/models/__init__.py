"""Flax generators (toy MLP)."""

from drifting_jax.models.mlp import ACTIVATIONS, MLPGenerator, sample_noise

__all__ = ["ACTIVATIONS", "MLPGenerator", "sample_noise"]
