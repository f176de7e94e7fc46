"""T5 as flags on the encoder–decoder, against an independent implementation: Hugging Face's
``T5ForConditionalGeneration`` (random init from a small ``T5Config``, no download) with our weights copied in.

What is compared: the bucket function (every offset in [−300, 300]), logits of a padded batch (fp32, dropout
off, max abs diff ≤ 1e-5), cached incremental decoding step by step against HF's ``past_key_values``, and
greedy output ids against HF ``generate``; for ReLU (T5) and gated GELU (T5 v1.1) feed-forwards, tied (decoder
output × d_model^-½) and untied output layers. Sensitivity twins perturb one weight and must disagree.

Token ids. The comparison uses T5's own convention, the harder case for us: pad = decoder start = 0,
eos = 1 (our config: ``pad_id = bos_id = 0``, ``eos_id = 1``; HF: ``pad_token_id = decoder_start_token_id = 0``,
``eos_token_id = 1``). Targets therefore begin with id 0, which our decoder must treat as a real token although
it is the pad id (``Transformer.decode`` does when ``bos_id == pad_id``); HF gets the same decoder attention
mask (1 at position 0, 0 at the trailing padding). Our greedy search never emits PAD or BOS (here both 0); HF
``generate`` is told the same with ``suppress_tokens=[0]``.

Weights are copied by hand below (ours → HF, names one by one), independently of the library's HF → ours
mapping ``rosetta.models.t5.t5_weights_from_hf``, which is checked separately (round trip, strict load).
"""

import pytest
import torch

import rosetta
from rosetta import Transformer, t5_config
from rosetta.decode.search import greedy_search
from rosetta.models.t5 import t5_config_from_hf, t5_weights_from_hf
from rosetta.nn.positional import RelativePositionBias, relative_position_bucket

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning")
T5Attention = transformers.models.t5.modeling_t5.T5Attention

V, D, H, DK, FF, LAYERS = 37, 16, 4, 6, 24, 2  # d_k · H = 24 ≠ d_model, as T5's d_kv allows
PAD = START = 0
EOS = 1
BUCKETS, MAX_DISTANCE = 8, 20  # small, so the test offsets reach the log-spaced and the last buckets
VARIANTS = [("relu", True), ("relu", False), ("geglu", True), ("geglu", False)]
IDS = ["relu-tied", "relu-untied", "geglu-tied", "geglu-untied"]


# ------------------------------------------------------------------------------------------ buckets
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("num_buckets", "max_distance"), [(32, 128), (16, 64), (8, 20), (4, 3), (33, 100)])
def test_bucket_equals_transformers(bidirectional, num_buckets, max_distance):
    offsets = torch.arange(-300, 301)
    ours = relative_position_bucket(offsets, bidirectional, num_buckets, max_distance)
    theirs = T5Attention._relative_position_bucket(offsets, bidirectional, num_buckets, max_distance)
    assert ours.dtype == torch.long
    assert torch.equal(ours, theirs)
    grid = relative_position_bucket(offsets[:600].view(3, 200), bidirectional, num_buckets, max_distance)
    assert torch.equal(grid, theirs[:600].view(3, 200))  # any shape


def test_bucket_formula_by_hand():
    """T5 defaults, bidirectional: offsets 0…7 exact, keys after the query in the upper half (+16), then
    E + ⌊ln(n/E) / ln(128/E) · (16 − E)⌋ with E = 8, and everything from 128 on in the last bucket."""
    offsets = torch.tensor([0, 1, 7, -1, -7, 8, 15, 23, -23, 127, 128, 1000, -1000])
    got = relative_position_bucket(offsets).tolist()
    # n = 15: 8 + ⌊ln(15/8) / ln 16 · 8⌋ = 8 + ⌊1.81⌋ = 9;  n = 23: 8 + ⌊3.05⌋ = 11;  n = 127: 8 + ⌊7.98⌋ = 15
    assert got == [0, 17, 23, 1, 7, 8 + 16, 9 + 16, 11 + 16, 11, 15 + 16, 15 + 16, 15 + 16, 15]
    # causal: keys after the query → 0; offsets −n → the same ladder over all 32 buckets (E = 16)
    assert relative_position_bucket(torch.tensor([3, 0, -15, -16, -1000]), bidirectional=False).tolist() == [
        0, 0, 15, 16, 31]


def test_bucket_is_public_and_rejects_degenerate_sizes():
    assert rosetta.positional.relative_position_bucket is relative_position_bucket
    with pytest.raises(ValueError, match="num_buckets"):
        relative_position_bucket(torch.arange(5), True, num_buckets=2)
    with pytest.raises(ValueError, match="max_distance"):
        relative_position_bucket(torch.arange(5), False, num_buckets=32, max_distance=16)


def test_relative_bias_follows_the_cache_offset():
    """The bias of new queries at offset o equals rows o… of the bias over the whole sequence."""
    torch.manual_seed(0)
    bias = RelativePositionBias(n_heads=3, num_buckets=8, max_distance=20, bidirectional=False)
    full = bias(12, 12)
    assert full.shape == (1, 3, 12, 12)
    torch.testing.assert_close(bias(1, 8, offset=7), full[:, :, 7:8, :8], atol=0, rtol=0)
    torch.testing.assert_close(bias(3, 12, offset=9), full[:, :, 9:12, :12], atol=0, rtol=0)
    assert torch.equal(full[0, :, 4, 2], bias.table.weight[2])  # offset 2 − 4 = −2 → bucket 2


# ------------------------------------------------------------------------------------------ config
def test_t5_config_flags_and_defaults():
    cfg = t5_config(100)
    assert (cfg.positional, cfg.scale_attention, cfg.norm, cfg.norm_eps, cfg.norm_first, cfg.bias) == (
        "relative", False, "rmsnorm", 1e-6, True, False)
    assert cfg.share_embeddings and cfg.tie_output and cfg.scale_decoder_output and not cfg.scale_embeddings
    v11 = t5_config(100, activation="geglu", tie_output=False)
    assert not v11.scale_decoder_output  # follows tie_output unless given
    assert t5_config(100, tie_output=False, scale_decoder_output=True).scale_decoder_output
    assert rosetta.ModelConfig.from_json(v11.to_json()) == v11
    # the defaults are the paper's model: the new flags change nothing unless set
    plain = rosetta.ModelConfig()
    assert plain.scale_attention and not plain.scale_decoder_output and plain.positional == "sinusoidal"


@pytest.mark.parametrize(("changes", "message"), [
    (dict(relative_buckets=2), "relative_buckets"),
    (dict(relative_buckets=32, relative_max_distance=16), "relative_max_distance"),
    (dict(activation="reglu"), "activation"),
])
def test_t5_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        t5_config(100, **changes)


def test_unscaled_attention_folds_the_scale_into_w_q():
    """init_weights gives W^Q a d_k^-½ factor when the logits are not scaled: same seed, same matrices
    otherwise."""
    base = dict(d_model=D, n_heads=H, d_k=DK, d_v=DK, d_ff=FF, n_encoder_layers=1, n_decoder_layers=1)
    torch.manual_seed(0)
    scaled = Transformer(t5_config(V, scale_attention=True, **base))
    torch.manual_seed(0)
    unscaled = Transformer(t5_config(V, **base))
    for ours, theirs in ((unscaled.encoder.layers[0].self_attn.qkv_proj, scaled.encoder.layers[0].self_attn.qkv_proj),
                         (unscaled.decoder.layers[0].cross_attn.q_proj, scaled.decoder.layers[0].cross_attn.q_proj)):
        torch.testing.assert_close(ours.weight[:H * DK], theirs.weight[:H * DK] * DK**-0.5)  # W^Q
        torch.testing.assert_close(ours.weight[H * DK:], theirs.weight[H * DK:])  # W^K, W^V (self-attention)


# ------------------------------------------------------------------------------------------ the pair
def our_model(activation, tied, seed=0):
    torch.manual_seed(seed)
    cfg = t5_config(V, d_model=D, n_heads=H, d_k=DK, d_v=DK, d_ff=FF, n_encoder_layers=LAYERS,
                    n_decoder_layers=LAYERS, relative_buckets=BUCKETS, relative_max_distance=MAX_DISTANCE,
                    activation=activation, tie_output=tied, dropout=0.0, attention_dropout=0.0,
                    activation_dropout=0.0, pad_id=PAD, bos_id=START, eos_id=EOS, max_len=64)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.2)  # norm gains start at 1: make them count
            elif "relative_bias" in name:
                p.normal_(0.0, 1.0)  # a bias large enough to reorder attention
    return model


def untie(hf, tied):
    """transformers 5 ties ``lm_head`` to ``shared`` even for ``tie_word_embeddings=False`` (it keeps the flag
    only as ``scale_decoder_outputs``, the d_model^-½ rescale): give the untied variant (T5 v1.1) its own
    output matrix, as its checkpoints have."""
    assert hf.config.scale_decoder_outputs == tied
    if not tied and hf.lm_head.weight is hf.shared.weight:
        hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.shared.weight))
    assert (hf.lm_head.weight is hf.shared.weight) == tied
    return hf


def hf_model(model, attn_implementation="eager"):
    cfg = model.config
    config = transformers.T5Config(
        vocab_size=V, d_model=D, d_kv=DK, d_ff=FF, num_layers=LAYERS, num_decoder_layers=LAYERS, num_heads=H,
        relative_attention_num_buckets=BUCKETS, relative_attention_max_distance=MAX_DISTANCE, dropout_rate=0.0,
        layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu" if cfg.activation == "geglu" else "relu",
        tie_word_embeddings=cfg.tie_output, pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=START,
    )
    config._attn_implementation = attn_implementation
    hf = untie(transformers.T5ForConditionalGeneration(config).eval(), cfg.tie_output)
    gated = cfg.activation == "geglu"
    with torch.no_grad():
        hf.shared.weight.copy_(model.src_embed.token.weight)
        assert hf.encoder.embed_tokens.weight is hf.shared.weight is hf.decoder.embed_tokens.weight
        if not cfg.tie_output:
            hf.lm_head.weight.copy_(model.output.weight)
        for ours, theirs in ((model.encoder, hf.encoder), (model.decoder, hf.decoder)):
            theirs.block[0].layer[0].SelfAttention.relative_attention_bias.weight.copy_(ours.relative_bias.table.weight)
            theirs.final_layer_norm.weight.copy_(ours.final_norm.weight)
            for mine, block in zip(ours.layers, theirs.block):
                attn = block.layer[0].SelfAttention
                q, k, v = mine.self_attn.qkv_proj.weight.split(H * DK)
                attn.q.weight.copy_(q), attn.k.weight.copy_(k), attn.v.weight.copy_(v)
                attn.o.weight.copy_(mine.self_attn.out_proj.weight)
                block.layer[0].layer_norm.weight.copy_(mine.self_attn_norm.weight)
                if mine.cross_attn is not None:
                    cross = block.layer[1].EncDecAttention
                    cross.q.weight.copy_(mine.cross_attn.q_proj.weight)
                    k, v = mine.cross_attn.kv_proj.weight.split(H * DK)
                    cross.k.weight.copy_(k), cross.v.weight.copy_(v)
                    cross.o.weight.copy_(mine.cross_attn.out_proj.weight)
                    block.layer[1].layer_norm.weight.copy_(mine.cross_attn_norm.weight)
                ff = block.layer[-1]
                dense = ff.DenseReluDense
                (dense.wi_0 if gated else dense.wi).weight.copy_(mine.feed_forward.w1.weight)
                if gated:
                    dense.wi_1.weight.copy_(mine.feed_forward.w3.weight)
                dense.wo.weight.copy_(mine.feed_forward.w2.weight)
                ff.layer_norm.weight.copy_(mine.feed_forward_norm.weight)
    return hf


@pytest.fixture(scope="module", params=VARIANTS, ids=IDS)
def pair(request):
    model = our_model(*request.param)
    return model, hf_model(model)


def padded_batch(seed=0, b=3, s=11, t=9):
    """Sources with trailing padding on two rows; targets = [START, tokens…] with trailing padding on one row.
    Tokens are never 0. Offsets reach ±10: past the exact buckets (2 a side), into the log-spaced ones."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(2, V, (b, s), generator=gen)
    tgt = torch.randint(2, V, (b, t), generator=gen)
    tgt[:, 0] = START
    src[0, 6:] = PAD
    src[1, s - 1:] = PAD
    tgt[0, 5:] = PAD
    return src, tgt


def hf_decoder_mask(tgt):
    mask = (tgt != PAD).long()
    mask[:, 0] = 1  # the start token is the pad id, and real
    return mask


def max_diff(a, b):
    return (a - b).abs().max().item()


def test_logits_equal_hf(pair):
    model, hf = pair
    src, tgt = padded_batch()
    with torch.no_grad():
        out = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt,
                 decoder_attention_mask=hf_decoder_mask(tgt))
        memory, _, _ = model.encode(src)
        ours = model(src, tgt)
    assert max_diff(memory, out.encoder_last_hidden_state) <= 1e-5  # padded positions included
    assert max_diff(ours, out.logits) <= 1e-5, f"max abs diff {max_diff(ours, out.logits):.2e}"
    assert ours.abs().max() > 0.1  # not vacuous: logits of a real size


@pytest.mark.parametrize("variant", VARIANTS[::3], ids=IDS[::3])
def test_logits_equal_hf_sdpa(variant):
    """HF's SDPA path (position bias as a float mask, as ours on the fused path) agrees too."""
    model = our_model(*variant, seed=3)
    hf = hf_model(model, attn_implementation="sdpa")
    src, tgt = padded_batch(seed=3)
    with torch.no_grad():
        theirs = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt,
                    decoder_attention_mask=hf_decoder_mask(tgt)).logits
        assert max_diff(model(src, tgt), theirs) <= 1e-5
        ours, _ = model(src, tgt, return_attention=True)  # our explicit-formula path
        assert max_diff(ours, theirs) <= 1e-5


def test_incremental_decoding_equals_hf_cache(pair):
    """encode + start_decoding + decode_step token by token against HF's past_key_values, every step; and
    against our own full forward."""
    model, hf = pair
    src, tgt = padded_batch(seed=1, t=14)
    tgt[0, 5:] = torch.arange(5, 14) % (V - 2) + 2  # no padding in the prefix: every position is decoded
    with torch.no_grad():
        mask = (src != PAD).long()
        enc = hf.get_encoder()(input_ids=src, attention_mask=mask)
        memory, memory_mask, _ = model.encode(src)
        state = model.start_decoding(memory, memory_mask)
        past, steps = None, []
        for i in range(tgt.shape[1]):
            theirs = hf(encoder_outputs=enc, attention_mask=mask, decoder_input_ids=tgt[:, i:i + 1],
                        past_key_values=past, use_cache=True)
            past = theirs.past_key_values
            steps.append(model.decode_step(tgt[:, i:i + 1], state))
            assert max_diff(steps[-1], theirs.logits) <= 1e-5, f"step {i}"
        full = model(src, tgt)
    assert max_diff(torch.cat(steps, 1), full) <= 1e-5


def test_incremental_decoding_several_tokens_per_step():
    """Chunks of several new tokens (causal mask and bias both offset by the cache) equal the full forward."""
    model = our_model("geglu", True, seed=4)
    src, tgt = padded_batch(seed=4, t=12)
    tgt[0] = tgt[0].clamp(min=2)
    tgt[0, 0] = START
    with torch.no_grad():
        full = model(src, tgt)
        memory, memory_mask, _ = model.encode(src)
        state = model.start_decoding(memory, memory_mask)
        out, start = [], 0
        for size in (3, 1, 4, 1, 3):
            out.append(model.decode_step(tgt[:, start:start + size], state))
            start += size
    assert max_diff(torch.cat(out, 1), full) <= 1e-5


def test_greedy_equals_hf_generate(pair):
    """Our greedy_search (which drops finished rows from the batch, caches and all) against HF greedy
    ``generate``. EOS is set, on both sides, to a token our model emits mid-sentence for one source, so
    outputs of different lengths are compared."""
    model, hf = pair
    gen = torch.Generator().manual_seed(5)
    src = torch.randint(2, V, (4, 9), generator=gen)
    src[1, 5:] = PAD
    src[3, 3:] = PAD
    steps = 12
    first = greedy_search(model, src, max_len=steps)
    chosen = next(r for r in first if len(r) > 3)
    eos = chosen[3]  # a token emitted 4th (or earlier) becomes EOS: that output stops there
    model.config = model.config.replace(eos_id=eos)
    try:
        ours = greedy_search(model, src, max_len=steps)
        with torch.no_grad():
            out = hf.generate(input_ids=src, attention_mask=(src != PAD).long(), max_new_tokens=steps,
                              num_beams=1, do_sample=False, suppress_tokens=[PAD], eos_token_id=eos,
                              decoder_start_token_id=START, pad_token_id=PAD)
    finally:
        model.config = model.config.replace(eos_id=EOS)
    theirs = []
    for row in out[:, 1:].tolist():  # drop the decoder start token
        theirs.append(row[: row.index(eos)] if eos in row else row)
    assert ours == theirs
    assert len(set(map(len, ours))) > 1 and chosen.index(eos) in map(len, ours)


def test_relative_positions_in_the_language_model():
    """The flag is not encoder–decoder only: a GPT stack with relative positions (causal buckets) decodes
    incrementally to its full forward, and its logits depend on order."""
    torch.manual_seed(9)
    cfg = rosetta.gpt_config(V, d_model=D, n_heads=H, d_ff=FF, n_decoder_layers=2, positional="relative",
                             relative_buckets=BUCKETS, relative_max_distance=MAX_DISTANCE, dropout=0.0)
    lm = rosetta.LanguageModel(cfg).eval()
    assert not lm.decoder.relative_bias.bidirectional
    ids = torch.randint(3, V, (2, 13))
    with torch.no_grad():
        full = lm(ids)
        state = lm.start_decoding(batch_size=2)
        steps = torch.cat([lm.decode_step(ids[:, :4], state)] + [lm.decode_step(ids[:, i:i + 1], state)
                                                                 for i in range(4, 13)], 1)
        assert max_diff(steps, full) <= 1e-5
        swapped = lm(ids[:, [1, 0] + list(range(2, 13))])  # the last token sees the same set of tokens
        assert max_diff(swapped[:, -1], full[:, -1]) > 1e-3  # … in another order


# ------------------------------------------------------------------------------------------ sensitivity
@pytest.mark.parametrize("name", ["encoder.relative_bias.table.weight", "decoder.relative_bias.table.weight",
                                  "decoder.final_norm.weight"])
def test_perturbing_one_weight_breaks_the_match(pair, name):
    """Twin of test_logits_equal_hf: the match is not vacuous — one changed weight shows."""
    model, hf = pair
    src, tgt = padded_batch()
    with torch.no_grad():
        weight = dict(model.named_parameters())[name]
        saved = weight.clone()
        weight.add_(0.5 * torch.randn_like(weight))
        try:
            theirs = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt,
                        decoder_attention_mask=hf_decoder_mask(tgt)).logits
            assert max_diff(model(src, tgt), theirs) > 1e-3
        finally:
            weight.copy_(saved)


def test_each_flag_matters():
    """Turning off any one T5 flag on our side (same weights) breaks the match with HF."""
    model = our_model("relu", True, seed=6)
    hf = hf_model(model)
    src, tgt = padded_batch(seed=6)
    with torch.no_grad():
        theirs = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt,
                    decoder_attention_mask=hf_decoder_mask(tgt)).logits
        assert max_diff(model(src, tgt), theirs) <= 1e-5
        for change in (dict(scale_attention=True), dict(scale_decoder_output=False),
                       dict(relative_max_distance=40), dict(bos_id=2)):
            other = Transformer(model.config.replace(**change)).eval()
            other.load_state_dict(model.state_dict())
            assert max_diff(other(src, tgt), theirs) > 1e-3, change


# ------------------------------------------------------------------------------------------ HF → ours
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_hf_weights_load_into_our_model(variant):
    """The library's mapping: an HF model (its own random init) → t5_config_from_hf + t5_weights_from_hf →
    our model, loaded strictly, gives HF's logits."""
    activation, tied = variant
    torch.manual_seed(7)
    config = transformers.T5Config(
        vocab_size=V, d_model=D, d_kv=DK, d_ff=FF, num_layers=LAYERS, num_decoder_layers=LAYERS + 1,
        num_heads=H, relative_attention_num_buckets=BUCKETS, relative_attention_max_distance=MAX_DISTANCE,
        dropout_rate=0.0, feed_forward_proj="gated-gelu" if activation == "geglu" else "relu",
        tie_word_embeddings=tied, pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=START)
    config._attn_implementation = "eager"
    hf = untie(transformers.T5ForConditionalGeneration(config).eval(), tied)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "layer_norm" in name:
                p.normal_(1.0, 0.2)
    cfg = t5_config_from_hf(config.to_dict(), dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    assert (cfg.tie_output, cfg.scale_decoder_output, cfg.activation) == (tied, tied, activation)
    assert (cfg.pad_id, cfg.bos_id, cfg.eos_id, cfg.n_decoder_layers) == (PAD, START, EOS, LAYERS + 1)
    model = Transformer(cfg).eval()
    model.load_state_dict(t5_weights_from_hf(hf.state_dict(), cfg), strict=True)
    src, tgt = padded_batch(seed=8)
    with torch.no_grad():
        theirs = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt,
                    decoder_attention_mask=hf_decoder_mask(tgt)).logits
        assert max_diff(model(src, tgt), theirs) <= 1e-5
