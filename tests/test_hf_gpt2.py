"""GPT-2 Hugging Face directories in Rosetta's own ``LanguageModel`` (``rosetta.hub.gpt2``).

The reference is ``transformers``: a tiny random ``GPT2LMHeadModel`` saved with ``save_pretrained`` next to a
byte-level BPE tokenizer trained here with ``tokenizers`` (GPT-2's pipeline, <|endoftext|> as the last id, as in
GPT-2), read back by ``GPT2LMHeadModel.from_pretrained`` and ``AutoTokenizer``. Checked against it: logits (fp32,
1e-5; a right-padded batch with its attention mask too), every layer's attention weights, cached incremental
decoding, greedy generation (Python API, ``rosetta generate``, ``rosetta serve``'s /v1/generate), token ids and
decoded text; the family the loaders report; the way back (``save_gpt2``). A twin with one weight swapped fails
each model comparison, a tokenizer with two ids swapped fails the tokenizer's; broken directories give one line.
"""

import asyncio
import json
import shutil

import httpx
import pytest
import torch
from hf_dirs import EOT, write_gpt2_dir
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from typer.testing import CliRunner

from rosetta.checkpoint import CheckpointError
from rosetta.cli import app
from rosetta.decode.loading import load_any
from rosetta.decode.sampling import generate, never_generated, stream_text
from rosetta.hub.byte_level import ByteLevelTokenizer
from rosetta.hub.gpt2 import config_to_hf, save_gpt2
from rosetta.hub.reader import read_hf
from rosetta.models.lm import LanguageModel, gpt_config
from rosetta.models.pretrained import PretrainedError
from rosetta.server import Settings, create_app

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

MIXED = ["Hello, world!", "  two  spaces\nand a newline\n", "café naïve résumé Ångström", "你好，世界。中文分词",
         "emoji 🙂🚀👍🏽 mix", "family 👨‍👩‍👧 ZWJ", f"before {EOT} after", "it's 3.14 — ok?", ""]
PROMPTS = ["Hello world", "the cat", "你好"]
NEW_TOKENS = 20
ATOL = 1e-5  # fp32


# ------------------------------------------------------------------------------------------------ the reference
@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return write_gpt2_dir(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def hf(gpt2_dir):
    return transformers.GPT2LMHeadModel.from_pretrained(gpt2_dir, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def hf_tokenizer(gpt2_dir):
    return transformers.AutoTokenizer.from_pretrained(gpt2_dir)


@pytest.fixture(scope="module")
def ours(gpt2_dir):
    return load_any(gpt2_dir)


def twin_dir(source, target, change):
    """A copy of ``source`` whose weights went through ``change(tensors)`` (in place)."""
    shutil.copytree(source, target)
    tensors = load_file(target / "model.safetensors")
    change(tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, target / "model.safetensors", metadata={"format": "pt"})
    return target


def swap_query_key(tensors, layer=1):
    """Layer ``layer``'s W^Q and W^K exchanged in the fused c_attn (D, 3D) = [Q | K | V]."""
    w = tensors[f"transformer.h.{layer}.attn.c_attn.weight"]
    d = w.shape[0]
    w[:, : 2 * d] = torch.cat([w[:, d : 2 * d], w[:, :d]], dim=1)


@pytest.fixture(scope="module")
def twin(gpt2_dir, tmp_path_factory):
    return load_any(twin_dir(gpt2_dir, tmp_path_factory.mktemp("twin") / "gpt2", swap_query_key))


# ------------------------------------------------------------------------------------------------ comparisons
IDS = torch.randint(0, 256, (3, 24), generator=torch.Generator().manual_seed(1))  # the byte symbols: always there


@torch.no_grad()
def logits_gap(model, hf) -> float:
    return (model(IDS) - hf(input_ids=IDS).logits).abs().max().item()


@torch.no_grad()
def attention_gap(model, hf) -> float:
    _, ours = model(IDS, return_attention=True)  # per layer (B, H, T, T)
    theirs = hf(input_ids=IDS, output_attentions=True).attentions
    assert len(ours) == len(theirs) == 2
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs))


@torch.no_grad()
def cached_gap(model, hf) -> float:
    """Our prompt in one step, then one token a step through the key/value caches, against HF's full pass."""
    state = model.start_decoding(IDS.shape[0])
    steps = [model.decode_step(IDS[:, :5], state)]
    steps += [model.decode_step(IDS[:, t : t + 1], state) for t in range(5, IDS.shape[1])]
    return (torch.cat(steps, 1) - hf(input_ids=IDS).logits).abs().max().item()


@torch.no_grad()
def hf_greedy(hf, hf_tokenizer, prompt) -> list[int]:
    """transformers' greedy continuation, up to (without) its first end-of-text token."""
    ids = torch.tensor([hf_tokenizer(prompt)["input_ids"]])
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW_TOKENS,
                      pad_token_id=hf.config.eos_token_id)[0, ids.shape[1]:].tolist()
    return out[: out.index(hf.config.eos_token_id)] if hf.config.eos_token_id in out else out


# ------------------------------------------------------------------------------------------------ the model
def test_logits_match_gpt2(ours, hf):
    gap = logits_gap(ours.model, hf)
    print(f"GPT-2 logits: max |ours − transformers| = {gap:.1e}")
    assert gap < ATOL


OPTIONS = {"untied output, exact GELU, 4·d feed-forward": dict(tie_word_embeddings=False, activation_function="gelu",
                                                               n_inner=None),
           "unscaled attention, ReLU, ε 1e-3": dict(scale_attn_weights=False, activation_function="relu",
                                                    layer_norm_epsilon=1e-3)}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS)
def test_other_gpt2_options_match(options, tmp_path):
    path = write_gpt2_dir(tmp_path, seed=4, **options)
    reference = transformers.GPT2LMHeadModel.from_pretrained(path).eval()
    assert logits_gap(load_any(path).model, reference) < ATOL


@torch.no_grad()
def test_padded_batch_matches_gpt2_with_attention_mask(ours, hf):
    """Rows of 24 and 15 tokens, right-padded: the real positions' logits equal HF's with the attention mask."""
    lengths = [24, 15]
    ids = IDS[:2].clone()
    ids[1, lengths[1]:] = ours.model.config.pad_id
    mask = (torch.arange(ids.shape[1]) < torch.tensor(lengths)[:, None]).long()
    mine, theirs = ours.model(ids), hf(input_ids=ids, attention_mask=mask).logits
    for row, n in enumerate(lengths):
        assert (mine[row, :n] - theirs[row, :n]).abs().max().item() < ATOL


def test_attention_weights_match_gpt2_in_every_layer(ours, hf):
    assert attention_gap(ours.model, hf) < ATOL


def test_cached_incremental_decoding_matches_the_full_pass(ours, hf):
    assert cached_gap(ours.model, hf) < ATOL


def old_layout(tensors):
    """The original GPT-2 upload's names: no ``transformer.`` prefix, and the causal-mask buffers saved too."""
    for name in list(tensors):
        tensors[name.removeprefix("transformer.")] = tensors.pop(name)
    for i in range(2):
        tensors[f"h.{i}.attn.bias"] = torch.ones(64, 64).tril().view(1, 1, 64, 64)
        tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)


def test_original_gpt2_names_and_mask_buffers_load(gpt2_dir, hf, tmp_path):
    assert logits_gap(load_any(twin_dir(gpt2_dir, tmp_path / "gpt2", old_layout)).model, hf) < ATOL


def test_twin_with_query_and_key_swapped_fails_each_comparison(twin, hf, hf_tokenizer):
    assert logits_gap(twin.model, hf) > 1e-2
    assert attention_gap(twin.model, hf) > 1e-2
    assert cached_gap(twin.model, hf) > 1e-2
    assert any(list(generate(twin.model, hf_tokenizer(p)["input_ids"], NEW_TOKENS, temperature=0.0))
               != hf_greedy(hf, hf_tokenizer, p) for p in PROMPTS)


# ------------------------------------------------------------------------------------------------ generation
def test_greedy_generation_matches_transformers_generate(ours, hf, hf_tokenizer):
    """``generate`` and ``stream_text`` (the CLI's and server's generator) at temperature 0 give transformers'
    ``generate(do_sample=False)`` token for token, "!" '"' "$" (ids 0, 1, 3: Rosetta's <pad> <s> <unk> ids)
    included: a GPT-2 vocabulary suppresses nothing."""
    assert never_generated(ours.tokenizer) == []
    produced = set()
    for prompt in PROMPTS:
        expected = hf_greedy(hf, hf_tokenizer, prompt)
        produced.update(expected)
        ids = ours.tokenizer.encode(prompt)
        assert list(generate(ours.model, ids, NEW_TOKENS, temperature=0.0)) == expected
        assert [t for t, _ in stream_text(ours.model, ours.tokenizer, prompt, NEW_TOKENS, 0.0)] == expected
    assert produced & {0, 1, 3}, "the reference never produced ids 0, 1, 3: the suppression check checks nothing"


def test_rosetta_generate_command_is_greedy_at_temperature_zero(gpt2_dir, hf, hf_tokenizer):
    for prompt in PROMPTS[:2]:
        result = CliRunner().invoke(app, ["generate", "--model", str(gpt2_dir), "--temperature", "0",
                                          "--max-new-tokens", str(NEW_TOKENS), prompt])
        assert result.exit_code == 0, result.output
        expected = hf_tokenizer.decode(hf_greedy(hf, hf_tokenizer, prompt), skip_special_tokens=True)
        assert result.stdout == prompt + expected + "\n"
        assert "warning" not in result.stderr  # no false "<unk>" warning: GPT-2's id 3 is "$"


def test_serve_answers_generate_for_gpt2(ours, hf, hf_tokenizer):
    app_ = create_app(ours, Settings(max_new_tokens=50))

    async def ask():
        transport = httpx.ASGITransport(app=app_)
        async with httpx.AsyncClient(transport=transport, base_url="http://rosetta", timeout=60) as client:
            body = {"prompt": PROMPTS[0], "max_new_tokens": NEW_TOKENS, "temperature": 0.0, "stream": False}
            return (await client.post("/v1/generate", json=body)), (await client.get("/v1/model"))

    try:
        answer, info = asyncio.run(ask())
    finally:
        app_.state.batcher.close()
    expected = hf_greedy(hf, hf_tokenizer, PROMPTS[0])
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == hf_tokenizer.decode(expected, skip_special_tokens=True)
    assert answer.json()["tokens"] == len(expected)
    assert info.json()["family"] == "lm"


# ------------------------------------------------------------------------------------------------ tokenizer
@pytest.fixture(scope="module", params=["tokenizer.json", "vocab.json + merges.txt"])
def tokenizer_dir(request, gpt2_dir, tmp_path_factory):
    """The directory as saved (tokenizer.json), or with vocab.json + merges.txt instead (GPT-2's older layout)."""
    if request.param == "tokenizer.json":
        return gpt2_dir
    path = tmp_path_factory.mktemp("vocab") / "gpt2"
    shutil.copytree(gpt2_dir, path)
    Tokenizer.from_file(str(path / "tokenizer.json")).model.save(str(path))  # vocab.json, merges.txt
    (path / "tokenizer.json").unlink()
    return path


def test_tokenizer_ids_and_text_match_transformers(tokenizer_dir):
    reference = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    mine = read_hf(tokenizer_dir).tokenizer
    for text in MIXED:
        ids = reference(text)["input_ids"]
        assert mine.encode(text) == ids, text
        assert mine.decode(ids) == reference.decode(ids, skip_special_tokens=True)
        if EOT not in text:
            assert mine.decode(ids) == text  # byte-level: every text comes back exactly
    assert mine.encode(EOT) == [mine.eos_id] == [reference.eos_token_id]


def test_tokenizer_with_two_ids_swapped_fails(gpt2_dir, hf_tokenizer, tmp_path):
    """The twin tokenizer: two vocabulary entries exchange their ids."""
    twin = tmp_path / "gpt2"
    shutil.copytree(gpt2_dir, twin)
    data = json.loads((twin / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    vocab["H"], vocab["Ġ"] = vocab["Ġ"], vocab["H"]
    (twin / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    mine = ByteLevelTokenizer.load(twin, 0, 0, 0)
    assert any(mine.encode(t) != hf_tokenizer(t)["input_ids"] for t in MIXED)


# ------------------------------------------------------------------------------------------------ loaders
def test_loaders_report_the_lm_family(gpt2_dir, ours):
    read = read_hf(gpt2_dir)
    assert read.family == ours.family == "lm"
    assert isinstance(read.model, LanguageModel) and isinstance(ours.model, LanguageModel)
    assert ours.info["model_type"] == "gpt2" and ours.info["source"] == "huggingface"
    assert not ours.model.training


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    (path / "config.json").write_text(json.dumps({**config, **changes}), encoding="utf-8")


def _replace_tensor(path, name, tensor, **config_changes):
    save_file({**load_file(path / "model.safetensors"), name: tensor}, path / "model.safetensors")
    _edit_config(path, **config_changes)


BROKEN = {
    "scale_attn_by_inverse_layer_idx": (lambda p: _edit_config(p, scale_attn_by_inverse_layer_idx=True),
                                        "scale_attn_by_inverse_layer_idx"),
    "reorder_and_upcast_attn": (lambda p: _edit_config(p, reorder_and_upcast_attn=True), "reorder_and_upcast_attn"),
    "add_cross_attention": (lambda p: _edit_config(p, add_cross_attention=True), "add_cross_attention"),
    "activation": (lambda p: _edit_config(p, activation_function="swish"), "activation_function"),
    "two end tokens": (lambda p: _edit_config(p, eos_token_id=[1, 2]), "eos_token_id"),
    "no tokenizer": (lambda p: (p / "tokenizer.json").unlink(), "no tokenizer"),
    "damaged tokenizer": (lambda p: (p / "tokenizer.json").write_text('{"model": 1', encoding="utf-8"),
                          "not a valid tokenizer.json"),
    "wrong width": (lambda p: _edit_config(p, n_embd=48), "shapes do not match"),
    # c_fc is (in, out) = (32, 48): a tensor stored the other way round
    "wrong tensor": (lambda p: _replace_tensor(p, "transformer.h.0.mlp.c_fc.weight", torch.zeros(48, 32)),
                     "feed_forward.w1.weight: (32, 48)"),
    "small vocabulary": (lambda p: _replace_tensor(p, "transformer.wte.weight", torch.zeros(200, 32), vocab_size=200,
                                                   eos_token_id=0, bos_token_id=0), "the tokenizer has"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_directories_give_one_line(case, gpt2_dir, tmp_path):
    path = tmp_path / "gpt2"
    shutil.copytree(gpt2_dir, path)
    breaks, says = BROKEN[case]
    breaks(path)
    with pytest.raises(CheckpointError) as error:
        load_any(path)
    message = str(error.value)
    assert says in message and "\n" not in message, message
    result = CliRunner().invoke(app, ["generate", "--model", str(path), "--max-new-tokens", "2", "hi"])
    assert result.exit_code == 2 and says in result.output


# ------------------------------------------------------------------------------------------------ the way back
@pytest.mark.parametrize("tied", [True, False])
def test_rosetta_lm_saved_as_gpt2_loads_in_transformers(tied, ours, tmp_path):
    torch.manual_seed(3)
    eot = ours.model.config.eos_id
    model = LanguageModel(gpt_config(300, d_model=32, n_heads=4, d_ff=40, n_decoder_layers=2, max_len=64,
                                     dropout=0.0, attention_dropout=0.0, tie_output=tied, bos_id=eot, eos_id=eot,
                                     pad_id=eot)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.1) if name.endswith("bias") else p.normal_(1.0, 0.2) if "norm" in name \
                else p.normal_(0.0, 0.3)
    save_gpt2(model, tmp_path, ours.tokenizer)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert ("lm_head.weight" in load_file(tmp_path / "model.safetensors")) is not tied
    with torch.no_grad():
        assert (model(IDS) - theirs(input_ids=IDS).logits).abs().max().item() < ATOL
        assert (load_any(tmp_path).model(IDS) - model(IDS)).abs().max().item() == 0.0


def test_way_back_refuses_what_gpt2_cannot_hold():
    for flag in (dict(norm="rmsnorm"), dict(positional="rope"), dict(activation="swiglu"), dict(norm_first=False)):
        with pytest.raises(PretrainedError, match=next(iter(flag))):
            config_to_hf(gpt_config(100, d_model=16, n_heads=2, d_ff=32, n_decoder_layers=1, **flag))
