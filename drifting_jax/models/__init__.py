"""Flax generators: the toy MLP, DiT presets (DiT-S/2, DiTGen-B/2, tiny) and CPU conv nets."""

from drifting_jax.models import conv, dit, mlp, presets
from drifting_jax.models.conv import ConvGenerator
from drifting_jax.models.dit import DiTGenerator, GeneratorNoise
from drifting_jax.models.mlp import ACTIVATIONS, MLPGenerator, sample_noise
from drifting_jax.models.presets import (PRESETS, count_params, describe, get_model,
                                         list_models, sample_image_noise)

__all__ = ["ACTIVATIONS", "MLPGenerator", "sample_noise", "ConvGenerator", "DiTGenerator",
           "GeneratorNoise", "PRESETS", "count_params", "describe", "get_model", "list_models",
           "sample_image_noise", "conv", "dit", "mlp", "presets"]
