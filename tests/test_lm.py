"""Decoder-only language model: causality, cached generation equal to the uncached loop (sliding window
included), a tiny model memorising a text and regenerating it greedily, seeds, empty and long prompts,
temperature ≤ 0 as greedy — for learned, rotary and other variants."""

import warnings

import pytest
import torch

from rosetta.decode import generate, sample_next
from rosetta.models.lm import LanguageModel, gpt_config

V, PAD, BOS, EOS, MAX_LEN = 29, 0, 1, 2, 24

VARIANTS = {
    "learned": {},
    "rope": dict(positional="rope"),
    "sinusoidal-postln-rmsnorm-swiglu": dict(positional="sinusoidal", norm_first=False, norm="rmsnorm",
                                             activation="swiglu", bias=False, tie_output=False),
}


def make_lm(seed=0, max_len=MAX_LEN, **overrides):
    torch.manual_seed(seed)
    config = gpt_config(V, d_model=32, n_heads=4, d_ff=64, n_decoder_layers=2, max_len=max_len, dropout=0.0,
                        attention_dropout=0.0, pad_id=PAD, bos_id=BOS, eos_id=EOS, **overrides)
    return LanguageModel(config).eval()


MODELS = {name: make_lm(**overrides) for name, overrides in VARIANTS.items()}
variants = pytest.mark.parametrize("variant", list(VARIANTS))


def random_ids(b, t, seed=0):
    return torch.randint(3, V, (b, t), generator=torch.Generator().manual_seed(seed))


@variants
def test_logits_at_t_ignore_tokens_after_t(variant):
    model, ids = MODELS[variant], random_ids(2, 12)
    with torch.no_grad():
        base = model(ids)
        for t in (0, 4, 10):
            changed = ids.clone()
            changed[:, t + 1 :] = random_ids(2, 11 - t, seed=t + 1)
            torch.testing.assert_close(model(changed)[:, : t + 1], base[:, : t + 1], atol=1e-5, rtol=1e-5)
        changed = ids.clone()
        changed[:, 4] = (changed[:, 4] - 3 + 1) % (V - 3) + 3  # the test is not vacuous: token t matters
        assert (model(changed)[:, 4] - base[:, 4]).abs().max() > 1e-4


@variants
def test_decode_step_equals_forward(variant):
    model, ids = MODELS[variant], random_ids(2, 14, seed=3)
    with torch.no_grad():
        full = model(ids)
        state = model.start_decoding(2)
        steps = [model.decode_step(ids[:, :6], state)] + [model.decode_step(ids[:, t : t + 1], state)
                                                          for t in range(6, 14)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert state.offset == 14


def uncached_generate(model, prompt, n, temperature, top_k, top_p, seed):
    """The definition: a full forward over the last max_len tokens for every new token."""
    generator = torch.Generator().manual_seed(seed)
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids[-model.config.max_len :]]))[:, -1]
            token = int(sample_next(logits, temperature, top_k, top_p, generator)[0])
            ids.append(token)
            out.append(token)
    return out


@variants
@pytest.mark.parametrize("sampling", [(0.0, None, None), (1.0, 5, None), (0.8, None, 0.9)])
def test_cached_generation_equals_uncached(variant, sampling):
    """40 new tokens after a 10-token prompt, context 24: the sliding window is exercised too."""
    model, prompt = MODELS[variant], random_ids(1, 10, seed=4)[0].tolist()
    temperature, top_k, top_p = sampling
    cached = list(generate(model, prompt, 40, temperature, top_k, top_p, torch.Generator().manual_seed(7),
                                 stop_at_eos=False))
    assert cached == uncached_generate(model, prompt, 40, temperature, top_k, top_p, seed=7)


TEXT = "rosetta stones speak many tongues."
CHARS = sorted(set(TEXT))


@pytest.mark.parametrize("variant", ["learned", "rope"])
def test_tiny_lm_memorises_a_text_and_regenerates_it(variant):
    model = make_lm(seed=1, max_len=48, **VARIANTS[variant]).train()
    ids = torch.tensor([[BOS] + [3 + CHARS.index(c) for c in TEXT] + [EOS]])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = model.loss(ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    model.eval()
    out = list(generate(model, [], len(TEXT) + 20, temperature=0.0))  # empty prompt → BOS; stops at EOS
    assert "".join(CHARS[i - 3] for i in out) == TEXT, f"loss {loss.item():.3f}"
    prompt = ids[0, :10].tolist()  # from the middle, as a tensor or a list
    assert list(generate(model, torch.tensor(prompt), 100, temperature=0.0)) == ids[0, 10:-1].tolist()


@variants
def test_same_seed_same_text(variant):
    model = MODELS[variant]

    def sample(seed):
        return list(generate(model, [5, 6], 20, temperature=1.0, generator=torch.Generator().manual_seed(seed),
                                   stop_at_eos=False))

    assert sample(123) == sample(123)
    assert sample(123) != sample(124)


def test_temperature_zero_or_below_is_greedy():
    model = MODELS["learned"]
    greedy = uncached_generate(model, [5, 6, 7], 12, 0.0, None, None, seed=0)
    for temperature, seed in ((0.0, 1), (-1.0, 2), (0.0, 3)):
        out = generate(model, [5, 6, 7], 12, temperature=temperature, top_k=3,
                             generator=torch.Generator().manual_seed(seed), stop_at_eos=False)
        assert list(out) == greedy
    with torch.no_grad():  # greedy = argmax of the logits
        assert greedy[0] == model(torch.tensor([[5, 6, 7]]))[0, -1].argmax().item()


def test_empty_prompt_starts_from_bos():
    model = MODELS["rope"]
    from_bos = list(generate(model, [BOS], 10, temperature=0.0, stop_at_eos=False))
    assert list(generate(model, [], 10, temperature=0.0, stop_at_eos=False)) == from_bos
    assert list(generate(model, torch.tensor([], dtype=torch.long), 10, temperature=0.0, stop_at_eos=False)) == from_bos


def test_long_prompt_keeps_the_last_tokens_with_a_warning():
    model = MODELS["learned"]
    prompt = random_ids(1, MAX_LEN + 9, seed=5)[0].tolist()
    with pytest.warns(UserWarning, match=f"keeping the last {MAX_LEN} tokens"):
        out = list(generate(model, prompt, 5, temperature=0.0, stop_at_eos=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(generate(model, prompt[-MAX_LEN:], 5, temperature=0.0, stop_at_eos=False)) == out


def test_generate_streams_and_checks_its_input():
    model = MODELS["learned"]
    stream = generate(model, [5], 1000, temperature=0.0, stop_at_eos=False)
    assert isinstance(next(stream), int)  # the first token arrives before the rest is computed
    stream.close()
    assert list(generate(model, [5], 0)) == []
    with pytest.raises(ValueError, match="one prompt"):
        list(generate(model, torch.tensor([[5, 6]]), 3))
    with pytest.raises(ValueError, match="out of the vocabulary"):
        list(generate(model, [V + 1], 3))


def test_loss_ignores_padding_and_attention_maps():
    model = MODELS["learned"]
    ids = torch.tensor([[BOS, 5, 6, 7, EOS]])
    padded = torch.cat([ids, torch.full((1, 3), PAD)], 1)
    with torch.no_grad():
        torch.testing.assert_close(model.loss(padded), model.loss(ids))
        logits, maps = model(ids, return_attention=True)
    assert logits.shape == (1, 5, V) and len(maps) == 2 and maps[0].shape == (1, 4, 5, 5)
    assert torch.all(maps[0][0, :, 0, 1:] == 0)  # causal: the first position sees only itself


def test_state_reorder_follows_beam_search():
    model, ids = MODELS["rope"], random_ids(2, 6, seed=6)
    with torch.no_grad():
        state = model.start_decoding(2)
        model.decode_step(ids[:, :5], state)
        state.reorder(torch.tensor([1, 1]))
        last = model.decode_step(ids[[1, 1], 5:], state)
        torch.testing.assert_close(last, model(ids[[1, 1]])[:, 5:], atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="rows"):
            model.decode_step(ids[:1, :1], model.start_decoding(2))


def test_tied_output_and_parameter_count():
    model = MODELS["learned"]
    assert model.output.weight is model.embed.token.weight and model.vocab_size == V
    untied = MODELS["sinusoidal-postln-rmsnorm-swiglu"]
    assert untied.output.weight is not untied.embed.token.weight
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))
