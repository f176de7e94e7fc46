"""Independent reference: Hugging Face ``GPT2LMHeadModel`` (random init from a ``GPT2Config``, no download) with
our ``LanguageModel``'s weights copied in.

GPT-2 is our decoder-only model with ``gpt_config``: Pre-LN with a final LayerNorm (ε 1e-5), learned positions,
tanh-GELU ("gelu_new"), biases, an output layer tied to the token embeddings, no √d scale. Differences handled
here: GPT-2's ``Conv1D`` stores its weight as (in, out), the transpose of ``nn.Linear``'s (out, in); its fused
``c_attn`` has the same [Q; K; V] layout as our ``qkv_proj``.
"""

import pytest
import torch

from rosetta.decode import generate
from rosetta.models.lm import LanguageModel, gpt_config

transformers = pytest.importorskip("transformers")

V, D, H, FF, LAYERS, MAX_POS = 37, 16, 4, 40, 2, 32


def our_model(seed=0):
    torch.manual_seed(seed)
    config = gpt_config(V, d_model=D, n_heads=H, d_ff=FF, n_decoder_layers=LAYERS, max_len=MAX_POS,
                        dropout=0.0, attention_dropout=0.0)
    model = LanguageModel(config).eval()
    with torch.no_grad():  # biases and norms away from 0 and 1, so that a mix-up shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in name:
                p.normal_(1.0, 0.2)
            else:  # larger than GPT-2's N(0, 0.02²) init, so the logits are not all near 0
                p.normal_(0.0, 0.3)
    return model


def gpt2_from(model):
    config = transformers.GPT2Config(
        vocab_size=V, n_positions=MAX_POS, n_embd=D, n_layer=LAYERS, n_head=H, n_inner=FF,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
    )
    hf = transformers.GPT2LMHeadModel(config).eval()
    t = hf.transformer
    with torch.no_grad():
        t.wte.weight.copy_(model.embed.token.weight)
        t.wpe.weight.copy_(model.embed.position.weight)
        for ours, theirs in zip(model.decoder.layers, t.h):
            for our_norm, their_norm in ((ours.self_attn_norm, theirs.ln_1), (ours.feed_forward_norm, theirs.ln_2)):
                their_norm.weight.copy_(our_norm.weight)
                their_norm.bias.copy_(our_norm.bias)
            for linear, conv in ((ours.self_attn.qkv_proj, theirs.attn.c_attn), (ours.self_attn.out_proj,
                                 theirs.attn.c_proj), (ours.feed_forward.w1, theirs.mlp.c_fc),
                                 (ours.feed_forward.w2, theirs.mlp.c_proj)):
                conv.weight.copy_(linear.weight.T)  # Conv1D: (in, out)
                conv.bias.copy_(linear.bias)
        t.ln_f.weight.copy_(model.decoder.final_norm.weight)
        t.ln_f.bias.copy_(model.decoder.final_norm.bias)
    assert hf.lm_head.weight.data_ptr() == t.wte.weight.data_ptr()  # tied, as ours
    return hf


MODEL = our_model()
HF = gpt2_from(MODEL)


def test_logits_match_gpt2():
    ids = torch.randint(0, V, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = MODEL(ids), HF(input_ids=ids).logits
    diff = (ours - theirs).abs().max().item()
    print(f"GPT-2 logits: max abs diff {diff:.2e}")
    assert diff < 1e-5


def test_incremental_decoding_matches_gpt2():
    """Prompt in one step, then token by token through our cache: the same logits as GPT-2's full pass."""
    ids = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        theirs = HF(input_ids=ids).logits
        state = MODEL.start_decoding(2)
        ours = [MODEL.decode_step(ids[:, :5], state)] + [MODEL.decode_step(ids[:, t : t + 1], state)
                                                         for t in range(5, 12)]
    diff = (torch.cat(ours, 1) - theirs).abs().max().item()
    assert diff < 1e-5


def test_greedy_generation_matches_gpt2_argmax():
    prompt = [3, 14, 15, 9, 26]
    ours = list(generate(MODEL, prompt, 10, temperature=0.0, stop_at_eos=False))
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(10):
            ids = torch.cat([ids, HF(input_ids=ids).logits[:, -1:].argmax(-1)], 1)
    assert ours == ids[0, len(prompt):].tolist()
