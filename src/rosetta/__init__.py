"""Rosetta: a readable, fast Transformer toolkit.

    >>> import rosetta
    >>> model = rosetta.Transformer(rosetta.ModelConfig.preset("tiny", src_vocab_size=100, tgt_vocab_size=100))
"""

from rosetta.attention import MultiHeadAttention, scaled_dot_product_attention
from rosetta.config import ModelConfig
from rosetta.model import Transformer

__all__ = ["ModelConfig", "MultiHeadAttention", "Transformer", "scaled_dot_product_attention"]
__version__ = "0.1.0"
