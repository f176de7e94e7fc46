"""Fill in masked tokens with a masked-language model (an encoder trained by ``task = "mlm"``).

    "北京是中国的首<mask>。" ─ tokenizer ─ <s> 北 京 是 中 国 的 首 <mask> 。 </s> ─ EncoderModel ─ MLM head
        ─ softmax at each <mask> ─ the top-k tokens: [("都", 0.83), ("府", 0.05), …]

    >>> fill_mask(load_any("runs/zh-bert-mlm"), "北京是中国的首<mask>。")
    [[('都', 0.83), ...]]

A Hugging Face masked LM (BertForMaskedLM, DistilBertForMaskedLM) reads its own framing, [CLS] … [SEP], from its
tokenizer.json; ``<mask>`` in the text stands for its [MASK] (writing [MASK] works too).
"""

from __future__ import annotations

import torch

from rosetta.data.tokenizer import Tokenizer
from rosetta.special_tokens import BOS_ID, EOS_ID, MASK, MASK_ID

HF_MASK = "[MASK]"


def masked_input(tokenizer, text: str) -> tuple[list[int], int]:
    """(input ids of ``text``, the mask token's id): <s> … </s> with a Rosetta tokenizer; with a Hugging Face
    ``tokenizers.Tokenizer`` its post-processor's framing ([CLS] … [SEP], <s> … </s>), ``<mask>`` read as
    its mask token ([MASK] or <mask>)."""
    if isinstance(tokenizer, Tokenizer):
        return [BOS_ID, *tokenizer.encode(text), EOS_ID], MASK_ID
    hf_mask = next((t for t in (HF_MASK, MASK) if tokenizer.token_to_id(t) is not None), None)
    if hf_mask is None:  # BERT's [MASK], RoBERTa's <mask>
        raise ValueError(f"this tokenizer has no {HF_MASK} or {MASK} token, so it cannot fill masks")
    mask_id = tokenizer.token_to_id(hf_mask)
    encoding = tokenizer.encode(text.replace(MASK, hf_mask))
    return encoding.ids[: sum(encoding.attention_mask)], mask_id


@torch.no_grad()
def fill_mask(loaded, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each ``<mask>`` in ``text``, left to right: the ``top_k`` most likely tokens and their probabilities
    (all masks are predicted at once, each from the others' surroundings, as in training)."""
    model = loaded.model
    if getattr(model, "mlm", None) is None:
        raise ValueError(f"{loaded.info.get('path', 'this model')} has no MLM head: fill-mask needs a model trained "
                         'with task = "mlm" or a Hugging Face BertForMaskedLM / DistilBertForMaskedLM')
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    ids, mask_id = masked_input(loaded.tokenizer, text)
    positions = [i for i, t in enumerate(ids) if t == mask_id]
    if not positions:
        raise ValueError(f"no {MASK} in the text: write {MASK} where a token is to be predicted, "
                         f"e.g. 北京是中国的首{MASK}。")
    if len(ids) > model.config.max_len:
        raise ValueError(f"the text is {len(ids)} tokens with its start and end tokens; the model reads at most "
                         f"{model.config.max_len}")
    device = next(model.parameters()).device
    hidden = model(torch.tensor([ids], device=device))[0, positions]  # (M, D)
    probs = model.mlm_logits(hidden).float().softmax(-1)  # (M, V)
    values, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [[(loaded.tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(values, indices)]
