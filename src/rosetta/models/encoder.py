"""Encoder-only model (BERT): the Transformer's encoder with a pooling or classification head on top.

    ids (B, T) ─ Embeddings (token + position + token type, LayerNorm) ─ N × EncoderLayer ─ hidden (B, T, D)
        hidden ─ mean over real tokens [─ L2 normalise] ─ sentence embedding (B, D)        (``embed``)
        hidden ─ pooler tanh(W·h_[CLS]) or mean pooling ─ Linear ─ logits (B, num_labels)   (``classify``)
        hidden ─ ReLU(W·h_[CLS] + b) ─ Linear ─ logits (B, num_labels)     (``classify``, with pre_classifier)
        hidden ─ Linear ─ GELU ─ LayerNorm ─ · Eᵀ + b ─ logits (…, vocab)     (``mlm_logits``, with mlm_head)
        hidden ─ Linear(D, 2) ─ start / end logits (B, T) each                (``span_logits``, with span_head)

Same blocks as the encoder–decoder (``rosetta.nn.blocks``). Which ``ModelConfig`` fields it reads: the vocabulary
is ``src_vocab_size`` (the encoder's side), the depth ``n_encoder_layers``, padding ``pad_id``; the decoder
fields are ignored. ``bert_config`` gives BERT's layout.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rosetta.models.transformer import Encoder, as_key_mask
from rosetta.nn.blocks import Embeddings
from rosetta.nn.config import ModelConfig
from rosetta.nn.stack import init_weights, num_parameters

# BERT's layout: Post-LN, learned positions, token types, LayerNorm on the embeddings, exact GELU, biases,
# no √d scale, LayerNorm ε 1e-12, N(0, 0.02²) initialisation.
BERT_LAYOUT: dict[str, Any] = dict(
    positional="learned", norm="layernorm", norm_eps=1e-12, norm_first=False, activation="gelu", bias=True,
    scale_embeddings=False, embedding_norm=True, type_vocab_size=2, init_std=0.02, n_decoder_layers=0,
    max_len=512,
)


def bert_config(vocab_size: int, **overrides: Any) -> ModelConfig:
    """A ``ModelConfig`` with BERT's layout and ``vocab_size`` tokens; sizes and any flag can be overridden,
    e.g. ``bert_config(100, d_model=64, n_heads=4, d_ff=256, n_encoder_layers=2)``."""
    return ModelConfig(**{**BERT_LAYOUT, "src_vocab_size": vocab_size, "tgt_vocab_size": vocab_size, **overrides})


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of hidden (B, T, D) over the positions where mask (B, T) is true → (B, D).

    mean = Σ_t m_t h_t / Σ_t m_t (a row without real tokens gives zeros)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class EncoderModel(nn.Module):
    """Encoder-only Transformer: contextual vectors, sentence embeddings and sequence classification.

    num_labels > 0 adds a classification head; mlm_head=True BERT's masked-language-model head (``MLMHead``,
    its output matrix the token embedding table); span_head=True a span head for extractive question answering
    (``qa_outputs``, as BERT's ``BertForQuestionAnswering``). pooler=True adds BERT's pooler,
    tanh(Linear(h_[CLS])), which the head then reads (as BERT's ``BertForSequenceClassification``); without it
    the head reads the mean of the real tokens, which trains well from scratch. pre_classifier=True reads
    ReLU(Linear(h_[CLS])) instead (DistilBERT's ``DistilBertForSequenceClassification``).

    attention_mask (B, T), 1/True at real tokens, defaults to ``ids != config.pad_id``; right padding is then
    invisible to the real tokens and to the pooling.
    """

    def __init__(self, config: ModelConfig, num_labels: int = 0, pooler: bool = False, mlm_head: bool = False,
                 span_head: bool = False, pre_classifier: bool = False):
        super().__init__()
        self.config = config
        self.num_labels = num_labels
        self.embeddings = Embeddings(config.src_vocab_size, config)
        self.encoder = Encoder(config)
        self.pooler = nn.Linear(config.d_model, config.d_model) if pooler else None
        self.pre_classifier = nn.Linear(config.d_model, config.d_model) if pre_classifier else None
        self.head_dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, num_labels) if num_labels > 0 else None
        self.mlm = MLMHead(config, self.embeddings.token) if mlm_head else None
        self.qa_outputs = nn.Linear(config.d_model, 2) if span_head else None
        init_weights(self, config)

    num_parameters = num_parameters

    def real_tokens(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) boolean: True at real tokens — ``attention_mask`` as booleans, or ``ids != pad_id``."""
        if attention_mask is None:
            return ids != self.config.pad_id
        if attention_mask.shape != ids.shape:
            raise ValueError(f"attention_mask of shape {tuple(attention_mask.shape)} must match ids "
                             f"{tuple(ids.shape)} (B, T): 1 at real tokens, 0 at padding")
        return attention_mask.bool()

    def forward(
        self,
        ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """ids (B, T) → hidden states (B, T, D); with ``return_attention`` also per-layer weights (B, H, T, T).

        token_type_ids (B, T): segment of each token (0 = first sentence, 1 = second), default all 0."""
        self.embeddings.check_ids(ids)
        key_mask = as_key_mask(self.real_tokens(ids, attention_mask), ids, self.config.pad_id)  # (B, 1, 1, T)
        x = self.embeddings(ids, token_type_ids=token_type_ids)
        hidden, attention = self.encoder(x, key_mask, need_weights=return_attention)
        return (hidden, [a["self"] for a in attention]) if return_attention else hidden

    def embed(
        self,
        ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        normalize: bool = False,
    ) -> torch.Tensor:
        """Sentence embeddings (B, D): mean of the hidden states over real tokens; ``normalize`` → unit L2 norm
        (then the dot product of two embeddings is their cosine similarity, as in sentence-transformers)."""
        hidden = self(ids, attention_mask, token_type_ids)
        pooled = mean_pool(hidden, self.real_tokens(ids, attention_mask))
        return F.normalize(pooled, p=2, dim=-1) if normalize else pooled

    def classify(
        self,
        ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits (B, num_labels): Linear(Dropout(pooler(h_[CLS]))) with a pooler (or pre_classifier), else
        of the mean."""
        hidden = self(ids, attention_mask, token_type_ids)
        return self.head(hidden, self.real_tokens(ids, attention_mask))

    def head(self, hidden: torch.Tensor, real_tokens: torch.Tensor) -> torch.Tensor:
        """The classification head alone: hidden states (B, T, D) and real-token mask (B, T) → logits (B, L).

        Split from ``classify`` so a training loop can run ``forward`` through a wrapper (DistributedDataParallel
        syncs gradients only for calls that go through its own ``forward``) and apply the head after it."""
        if self.classifier is None:
            raise ValueError("this EncoderModel has no classification head; build it with num_labels > 0")
        if self.pre_classifier is not None:
            features = F.relu(self.pre_classifier(hidden[:, 0]))  # DistilBERT: the first token ([CLS])
        elif self.pooler is not None:
            features = torch.tanh(self.pooler(hidden[:, 0]))  # the first token ([CLS])
        else:
            features = mean_pool(hidden, real_tokens)
        return self.classifier(self.head_dropout(features))

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The MLM head alone: hidden states (…, D), e.g. only those of the masked positions (N, D) → (…, V)."""
        if self.mlm is None:
            raise ValueError("this EncoderModel has no MLM head; build it with mlm_head=True")
        return self.mlm(hidden)

    def span_logits(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The span head alone: hidden states (B, T, D) → (start logits, end logits), each (B, T).

        An answer is the span i…j maximising start_i + end_j (j ≥ i); position 0 ([CLS]) stands for "no answer
        in this window". Split from the forward pass for DDP, as ``head``."""
        if self.qa_outputs is None:
            raise ValueError("this EncoderModel has no span head; build it with span_head=True")
        start, end = self.qa_outputs(hidden).unbind(-1)  # (B, T) each
        return start, end


class MLMHead(nn.Module):
    """BERT's masked-language-model head: logits = LayerNorm(GELU(W h + c)) · Eᵀ + b.

    ``decoder`` is a Linear whose weight IS the token embedding table E (V, D) (tied: one tensor, trained by
    both ends, stored once), plus its own bias b (V,). As Hugging Face ``BertForMaskedLM``'s
    ``cls.predictions``: transform.dense = ``dense``, transform.LayerNorm = ``norm``, decoder, bias.
    ``hidden_size``: the width of the hidden states it reads, when it differs from E's (ELECTRA's generator)."""

    def __init__(self, config: ModelConfig, token_embedding: nn.Embedding, hidden_size: int | None = None):
        super().__init__()
        vocab, d = token_embedding.weight.shape
        self.dense = nn.Linear(hidden_size or d, d)
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"
        self.norm = nn.LayerNorm(d, eps=config.norm_eps)
        self.decoder = nn.Linear(d, vocab)
        self.decoder.weight = token_embedding.weight  # tied

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.norm(F.gelu(self.dense(hidden), approximate=self.approximate))  # (…, D)
        return self.decoder(x)  # (…, V)
