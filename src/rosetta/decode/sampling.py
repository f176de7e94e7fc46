"""Sampling: logits processors and the language model's token-by-token generator.

    logits (N, V) ─ min length ─ temperature ─ top-k ─ top-p (nucleus) ─ softmax ─ multinomial ─ ids (N,)

``generate(model, prompt, …)`` runs a decoder-only ``LanguageModel`` incrementally (its key/value caches, one
token a step) and yields each new token as soon as it is chosen; ``stream_text`` turns those tokens into the
text each adds, so the CLI and the server can stream.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence

import torch

from rosetta.decode.selection import argmax_rows
from rosetta.special_tokens import BOS, PAD, UNK

# Never produced by a language model trained on plain text: those tokens never occur in its targets.
LM_SUPPRESS = (PAD, BOS, UNK)


def never_generated(tokenizer) -> list[int]:
    """Ids of ``LM_SUPPRESS``'s tokens in this vocabulary (a Rosetta one: 0, 1, 3). A pretrained vocabulary
    without them (GPT-2's, where ids 0, 1, 3 are "!", '"', "$") suppresses nothing, as transformers does."""
    return [i for i in map(tokenizer.token_to_id, LM_SUPPRESS) if i is not None]


def apply_min_length(logits: torch.Tensor, step: int, min_len: int, eos_id: int) -> torch.Tensor:
    """Forbid EOS (logit −∞, in place) while fewer than ``min_len`` tokens exist; ``step`` = tokens so far.

    logits: (N, V). Returns ``logits`` for chaining."""
    if step < min_len:
        logits[:, eos_id] = -math.inf
    return logits


def no_repeat_ngram_filter(logits: torch.Tensor, history: torch.Tensor, n: int) -> torch.Tensor:
    """Forbid (logit −∞, in place) every token that would repeat an n-gram: ``no_repeat_ngram_size`` as
    fairseq and Hugging Face define it — a hypothesis may not produce an n-gram it already contains.

    For a row whose tokens so far are h₀ … h_{t−1}, the banned tokens are h_{j+n−1} for every j with
    h_j … h_{j+n−2} = h_{t−n+1} … h_{t−1} (the n−1 last tokens seen before, each followed by that token).
    logits: (N, V); history: (N, t) token ids without BOS (the start token occurs once, so it never repeats
    an n-gram). n ≤ 0, or fewer than n tokens so far, bans nothing. Returns ``logits`` for chaining."""
    t = history.shape[1]
    if n <= 0 or t < n:
        return logits
    windows = history.unfold(1, n, 1)  # (N, t − n + 1, n): every n-gram so far
    suffix = history[:, t - n + 1 :]  # (N, n − 1): the prefix the next token would complete
    match = (windows[..., :-1] == suffix[:, None, :]).all(dim=-1)  # (N, t − n + 1)
    hits = torch.zeros(logits.shape, device=logits.device).scatter_add_(1, windows[..., -1], match.float())
    return logits.masked_fill_(hits > 0, -math.inf)


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (ties with the k-th are kept too), set the rest to −∞.

    logits: (N, V) → a new (N, V) tensor. ``k`` None, ≤ 0 or ≥ V keeps everything."""
    if not k or k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (N, 1) the k-th largest logit
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filter (Holtzman et al., 2020): keep the smallest set of most likely tokens whose probability
    reaches ``p``; the most likely token is always kept. Others get −∞.

    logits: (N, V) → a new (N, V) tensor. ``p`` None or ≥ 1 keeps everything."""
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.float().softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the strictly more likely tokens
    drop_sorted = mass_before >= p  # the set already reached p without this token
    drop_sorted[..., 0] = False  # rank 0 even when p is below float32's smallest number (5e-324 is 0 there)
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, -math.inf)


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose the next token of each row from logits (N, V) → ids (N,).

    temperature ≤ 0: greedy (argmax; filters and ``generator`` unused). Otherwise sample from
    softmax(logits / temperature) restricted by ``top_k`` and then ``top_p``. The same ``generator`` state
    gives the same tokens."""
    if temperature <= 0:
        return argmax_rows(logits)  # the first of equal maxima, as argmax (decode.selection)
    # Shifted so the best logit is 0, and divided by no less than float32's smallest normal number: a temperature
    # near 0 (1e-300) then keeps the best token(s), instead of 0 / 0 = NaN.
    logits = logits.float()
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / max(temperature, torch.finfo(torch.float32).tiny)
    logits = top_p_filter(top_k_filter(logits, top_k), top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    stop_at_eos: bool = True,
    suppress: Sequence[int] = (),
) -> Iterator[int]:
    """Sample a continuation of one prompt, yielding each new token id as soon as it is chosen (streaming).

    prompt_ids: token ids, a list or a 1-D tensor; empty → start from ``config.bos_id``.
    temperature ≤ 0 → greedy (argmax, ``generator`` unused); otherwise softmax(logits / temperature),
    restricted to the ``top_k`` most likely tokens and/or the smallest set of mass ≥ ``top_p``
    (``sample_next``). Same ``generator`` seed → same tokens.
    Stops after ``max_new_tokens`` tokens, or at ``config.eos_id`` (not yielded) if ``stop_at_eos``.
    ``suppress``: token ids never produced (logit −∞), e.g. <pad> and <s> for a model trained on plain text.

    Context: the model sees at most ``config.max_len`` tokens. A longer prompt keeps its last max_len
    tokens (with a warning); once the sequence outgrows the context, each step re-reads the last max_len
    tokens from scratch (a sliding window: the cache is recomputed, positions start again at 0).

    ``model`` is a ``LanguageModel`` (anything with ``config``, ``output``, ``start_decoding`` and
    ``decode_step``). Runs without gradients; call ``model.eval()`` first, as for any inference (dropout otherwise).
    """
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long)
    if prompt.dim() != 1:
        raise ValueError(f"generate takes one prompt (a list or 1-D tensor of ids), not {tuple(prompt.shape)}")
    ids = prompt.tolist()
    window = model.config.max_len
    if not ids:
        ids = [model.config.bos_id]
    if len(ids) > window:
        warnings.warn(f"prompt of {len(ids)} tokens is longer than the model's context (max_len={window}); "
                      f"keeping the last {window} tokens", stacklevel=2)
        ids = ids[-window:]
    device = model.output.weight.device
    state = model.start_decoding(1)
    logits = model.decode_step(torch.tensor([ids], device=device), state)[:, -1]  # (1, V)
    for step in range(max_new_tokens):
        if step:
            if state.offset < window:  # room left: one cached step
                logits = model.decode_step(torch.tensor([ids[-1:]], device=device), state)[:, -1]
            else:  # context full: slide the window, rebuild the cache from it
                state = model.start_decoding(1)
                logits = model.decode_step(torch.tensor([ids], device=device), state)[:, -1]
        if suppress:
            logits[:, list(suppress)] = -float("inf")
        token = int(sample_next(logits, temperature, top_k, top_p, generator)[0])
        if stop_at_eos and token == model.config.eos_id:
            return
        yield token
        ids = (ids + [token])[-window:]


def stream_text(model, tokenizer, prompt: str, max_new_tokens: int, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                suppress: Sequence[int] | None = None) -> Iterator[tuple[int, str]]:
    """Continue ``prompt`` (text) with ``generate``, yielding (token id, the text it adds) per new token.

    The pieces are read off the decoded continuation: piece_t = decode(ids[:t+1])[len(decode(ids[:t])):]. A
    byte-level token that ends inside a multi-byte character adds "" (its half character decodes to U+FFFD)
    and the token that completes the character carries it; so the pieces join to ``tokenizer.decode(ids)``,
    except an unfinished character at the very end (decode the ids for the final text). ``suppress``: ids never
    produced (None: ``never_generated(tokenizer)``)."""
    ids = tokenizer.encode(prompt)
    suppress = never_generated(tokenizer) if suppress is None else suppress
    produced: list[int] = []
    shown = ""
    for token in generate(model, ids, max_new_tokens, temperature, top_k, top_p, generator=generator,
                          suppress=suppress):
        produced.append(token)
        text = tokenizer.decode(produced)
        if text.endswith("\ufffd") or not text.startswith(shown):
            yield token, ""
            continue
        piece, shown = text[len(shown):], text
        yield token, piece
