"""Flax modules: the toy MLP, DiT presets (DiT-S/2, DiTGen-B/2, tiny), CPU conv nets, the
shared generator interface (``conditioning``) and frozen feature encoders (``encoders``)."""

from drifting_jax.models import conditioning, conv, dit, encoders, mlp, presets
from drifting_jax.models.conv import ConvGenerator
from drifting_jax.models.conditioning import GeneratorNoise
from drifting_jax.models.dit import DiTGenerator
from drifting_jax.models.encoders import (ConvFeatureEncoder, FeatureExtractor, from_flax,
                                         make_feature_extractor)
from drifting_jax.models.mlp import ACTIVATIONS, MLPGenerator, sample_noise
from drifting_jax.models.presets import (PRESETS, count_params, describe, get_model,
                                         list_models, sample_image_noise)

__all__ = ["ACTIVATIONS", "MLPGenerator", "sample_noise", "ConvGenerator", "DiTGenerator",
           "GeneratorNoise", "PRESETS", "count_params", "describe", "get_model", "list_models",
           "sample_image_noise", "ConvFeatureEncoder", "FeatureExtractor", "from_flax",
           "make_feature_extractor", "conditioning", "conv", "dit", "encoders", "mlp", "presets"]
