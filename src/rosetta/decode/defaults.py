"""Decoding defaults: the one place that says what ``beam``, ``length_penalty`` and the output limit are
when nobody chose them.

A recipe's ``[decode]`` section (``rosetta.train.recipe``) is this dataclass; its values are saved with the
trained model (config.json, "decode"), and the ``Translator``, the CLI and the server read them back from
there, falling back to these defaults for a model saved without them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# A source longer than this many tokens is cut (with a warning) even when the model has more positions:
# the encoder's attention costs O(S²) per request, and the server and the page take untrusted text.
SOURCE_TOKEN_CAP = 256


@dataclass
class DecodeOptions:
    """How a translation is searched for.

    beam            beam size; 1 = greedy search
    length_penalty  α of the GNMT length penalty ((5 + |Y|) / 6)^α (Wu et al., 2016); 0 = raw log-probability
    max_len_ratio,  an output has at most ``int(max_len_ratio · source tokens) + max_len_offset`` tokens
    max_len_offset  (fairseq's max_len_a / max_len_b)
    no_repeat_ngram_size  n > 0: no output contains the same n-gram twice (fairseq / Hugging Face); 0 = off

    Hugging Face ``generate``'s conventions, which its models (``rosetta.hub``) are read with
    (``rosetta.decode.search``):
    max_len         at most this many output tokens (EOS not counted) instead of the ratio; None = the ratio
    length_norm     "gnmt" (the default above) or "hf": lp(Y) = |Y|^α, with ``generate``'s stopping rule
    force_eos       the last token the limit allows is EOS (``forced_eos_token_id``)
    force_bos       a token id the output starts with, at no cost to its score (``forced_bos_token_id``: BART's
                    <s> after its start token </s>); None = none forced
    renormalize     beam search renormalises log-probabilities after the bans (``renormalize_logits``)
    early_stopping  beam search ends a sentence as soon as it has ``beam`` finished hypotheses (``early_stopping``)
    min_len         EOS is held back until the output has this many tokens (``min_length`` − 1: Hugging Face
                    counts the start token)
    """

    beam: int = 4
    length_penalty: float = 0.6
    max_len_ratio: float = 1.5
    max_len_offset: int = 10
    no_repeat_ngram_size: int = 0
    max_len: int | None = None
    length_norm: str = "gnmt"
    force_eos: bool = False
    renormalize: bool = False
    force_bos: int | None = None
    early_stopping: bool = False
    min_len: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DecodeOptions:
        """The options saved with a model (unknown keys ignored, missing ones default)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


DEFAULTS = DecodeOptions()


def max_source_tokens(model_max_len: int) -> int:
    """Longest source (in tokens, before </s>) a translator encodes for a model with ``model_max_len``
    positions: the positions, capped at ``SOURCE_TOKEN_CAP``, less one for the </s> appended to every source
    and one spare."""
    return min(model_max_len, SOURCE_TOKEN_CAP) - 2
