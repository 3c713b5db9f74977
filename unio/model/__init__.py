"""The unified encoder-decoder (transformer.py), its loss, generation, constraints and guidance."""

from unio.model.constraints import GrammarConstraint
from unio.model.generate import GenerationConfig, GenerationOutput, generate
from unio.model.guidance import drop_condition, null_condition
from unio.model.loss import LossConfig, LossOutput, SequenceLoss
from unio.model.transformer import ModelConfig, UnifiedTransformer, build_model, model_config_from_dict

__all__ = [
    "GenerationConfig",
    "GenerationOutput",
    "GrammarConstraint",
    "LossConfig",
    "LossOutput",
    "ModelConfig",
    "SequenceLoss",
    "UnifiedTransformer",
    "build_model",
    "drop_condition",
    "generate",
    "model_config_from_dict",
    "null_condition",
]
