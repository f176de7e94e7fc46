"""Arrangements of the pieces in ``rosetta.nn``; imports only ``rosetta.nn``.

    transformer  the encoder–decoder (translation)
    lm           decoder-only language model (GPT)
    encoder      encoder-only model with pooling and a classifier head (BERT)
    t5           T5 = the encoder–decoder with flags: ``t5_config``, Hugging Face T5 config/weights mapping
    pretrained   Hugging Face BERT weights (MiniLM) into ``encoder``
    vit          Vision Transformer: patches of an image through the encoder stack, [CLS] → classes
"""

from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.models.lm import LanguageModel, gpt_config
from rosetta.models.t5 import t5_config
from rosetta.models.transformer import Transformer
from rosetta.models.vit import ImageSpec, ViT, vit_config

__all__ = ["EncoderModel", "ImageSpec", "LanguageModel", "Transformer", "ViT", "bert_config", "gpt_config",
           "t5_config", "vit_config"]
