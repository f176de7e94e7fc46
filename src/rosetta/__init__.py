"""Rosetta: a readable, fast Transformer toolkit.

    >>> import rosetta
    >>> model = rosetta.Transformer(rosetta.ModelConfig.preset("tiny", src_vocab_size=100, tgt_vocab_size=100))

The code is laid out by part, imports pointing one way (docs/concepts.md maps each concept to its file):

    nn/          the pieces: attention, positional encodings, blocks, the layer stack, ModelConfig
    models/      arrangements of the pieces: Transformer, LanguageModel (GPT), EncoderModel (BERT), pretrained
    hub/         Hugging Face directories into those arrangements: one registry of families by model_type
    data/        corpora, clean-up, tokenizers, batching (stands alone)
    checkpoint/  atomic checkpoint directories and the run-folder layout (stands alone)
    train/       the Trainer, losses, schedules, precision, recipes
    tasks/       translation, language model, classification: recipe → model, batches, loss, evaluation
    decode/      greedy, beam, sampling; Translator and load()
    view/        plots, fonts, embedding space
    server/      the HTTP server and the attention explorer page
    cli/         the ``rosetta`` command

The names below, and ``rosetta.attention``, ``rosetta.positional`` and ``rosetta.decode``, are the public API.
"""

import sys

from rosetta import decode
from rosetta.decode.pipelines import load
from rosetta.decode.translator import Translator
from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.models.lm import LanguageModel, gpt_config
from rosetta.models.pretrained import load_pretrained
from rosetta.models.t5 import t5_config
from rosetta.models.transformer import Transformer
from rosetta.nn import attention, positional
from rosetta.nn.attention import MultiHeadAttention, scaled_dot_product_attention
from rosetta.nn.config import ModelConfig

# ``from rosetta.attention import …`` and ``import rosetta.positional`` as before the move into nn/: the same
# module objects under their short names (not copies, so a patched function is patched for both names).
sys.modules[f"{__name__}.attention"] = attention
sys.modules[f"{__name__}.positional"] = positional

__all__ = [
    "EncoderModel",
    "LanguageModel",
    "ModelConfig",
    "MultiHeadAttention",
    "Transformer",
    "Translator",
    "attention",
    "bert_config",
    "decode",
    "gpt_config",
    "load",
    "load_pretrained",
    "positional",
    "scaled_dot_product_attention",
    "t5_config",
]
__version__ = "0.1.0"
