"""Flax models of the VideoMAE V2 ViT family."""
from videomae_jax.models.classifier import VideoClassifier
from videomae_jax.models.pretrain import VideoMAEPretrainModel
from videomae_jax.models.variants import VARIANTS, ModelSpec, model_spec_from_config
from videomae_jax.models.vit import VideoViTEncoder
