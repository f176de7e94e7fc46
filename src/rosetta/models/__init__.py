"""Arrangements of the pieces in ``rosetta.nn``; imports only ``rosetta.nn``.

    transformer  the encoder–decoder (translation)
    lm           decoder-only language model (GPT)
    encoder      encoder-only model with pooling and a classifier head (BERT)
    pretrained   Hugging Face BERT weights (MiniLM) into ``encoder``
"""

from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.models.lm import LanguageModel, gpt_config
from rosetta.models.transformer import Transformer

__all__ = ["EncoderModel", "LanguageModel", "Transformer", "bert_config", "gpt_config"]
