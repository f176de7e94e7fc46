"""Rosetta: a readable, fast Transformer toolkit.

    >>> import rosetta
    >>> model = rosetta.Transformer(rosetta.ModelConfig.preset("tiny", src_vocab_size=100, tgt_vocab_size=100))
"""

from rosetta.attention import MultiHeadAttention, scaled_dot_product_attention
from rosetta.config import ModelConfig
from rosetta.encoder_model import EncoderModel, bert_config
from rosetta.lm import LanguageModel, gpt_config
from rosetta.model import Transformer
from rosetta.pretrained import load_pretrained
from rosetta.translate import Translator, load

__all__ = [
    "EncoderModel",
    "LanguageModel",
    "ModelConfig",
    "MultiHeadAttention",
    "Transformer",
    "Translator",
    "bert_config",
    "gpt_config",
    "load",
    "load_pretrained",
    "scaled_dot_product_attention",
]
__version__ = "0.1.0"
