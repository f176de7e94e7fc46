"""rosetta.tasks.mlm, the MLM head and the WordPiece tokenizer: masking statistics against their definition
(brute force over words), the head against Hugging Face ``BertForMaskedLM`` with copied weights, the
tokenizer against ``transformers.BertTokenizer`` on the same vocabulary, and a tiny pretraining run."""

import json
import math
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rosetta.cli import app
from rosetta.data.tokenizer import Tokenizer
from rosetta.decode.loading import load_any
from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.special_tokens import BOS_ID, EOS_ID, MASK_ID, PAD_ID
from rosetta.tasks.mlm import IGNORE, N_SPECIAL, mask_tokens

runner = CliRunner()
ZH = ["基于《跑跑卡丁车》与《泡泡堂》上所开发的游戏，由韩国Nexon开发与发行。", "中国大陆由盛大游戏运营。",
      "玩家以水枪、小枪、锤子或是水炸弹泡封敌人(玩家或NPC)，即为一泡封。", "我们明天去北京吗？我不知道。",
      "Python 3.11 is fun, 2019年发行的playstation游戏。", "Tom喜欢踢足球，他的朋友也喜欢。"]


@pytest.fixture(autouse=True, scope="module")
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def wordpiece() -> Tokenizer:
    return Tokenizer.train_wordpiece(ZH * 5 + ["playstation playground player players"] * 3, vocab_size=400)


# ---------------------------------------------------------------------------------------------- tokenizer
def test_wordpiece_specials_cjk_characters_and_continuations():
    tok = wordpiece()
    assert [tok.id_to_token(i) for i in range(5)] == ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
    assert tok.tokens("我们明天去北京") == list("我们明天去北京")  # every CJK character one token
    assert tok.encode("北京是<mask>国") == [tok.token_to_id(c) for c in "北京是"] + [MASK_ID, tok.token_to_id("国")]
    continues = tok.word_continuations()
    pieces = tok.tokens("playstations")
    assert len(pieces) > 1 and pieces[1].startswith("##")
    assert [continues[i] for i in tok.encode("playstations")] == [p.startswith("##") for p in pieces]
    with pytest.raises(ValueError, match="wordpiece"):
        Tokenizer.train_chars(["abc"]).word_continuations()


def test_wordpiece_tokens_equal_bert_tokenizer_on_the_same_vocabulary(tmp_path):
    """transformers' BertTokenizer (BasicTokenizer: Chinese characters and punctuation split off, lower case;
    then WordPiece) with our vocabulary is the independent reference."""
    transformers = pytest.importorskip("transformers")
    tok = wordpiece()
    vocab = [tok.id_to_token(i) for i in range(tok.vocab_size)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    bert = transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=True, unk_token="<unk>",
                                      tokenize_chinese_chars=True)
    for text in ZH + ["他说：“你好！” Tom's players play 42 games."]:
        assert tok.tokens(text) == bert.tokenize(text), text


def test_offsets_point_into_the_original_text():
    tok = wordpiece()
    text = "  Ｎｅｘｏｎ 开发的𫚭鱼  游戏，PlayStation！"  # full-width Latin (NFKC), a non-BMP character, spaces
    ids, offsets = tok.encode_with_offsets(text)
    assert ids == tok.encode(text) and len(offsets) == len(ids)
    for token, (start, end) in zip(tok.tokens(text), offsets):
        if token != "<unk>":
            assert tok.normalize(text[start:end]).lower() == token.removeprefix("##"), (token, text[start:end])
    assert text[offsets[-1][0]:offsets[-1][1]] == "！"
    assert "".join(text[s:e] for s, e in offsets) == "".join(text.split())


# ---------------------------------------------------------------------------------------------- masking
def synthetic_batch(rng: random.Random, vocab: int, batch: int = 64, length: int = 96):
    """Rows of <s> words </s> <pad>…, words of 1–3 tokens; ids ≥ vocab//2 are the "##" continuations."""
    continues = torch.zeros(vocab, dtype=torch.bool)
    continues[vocab // 2:] = True
    rows = []
    for _ in range(batch):
        row = [BOS_ID]
        while len(row) < rng.randrange(length // 2, length - 3):
            row.append(rng.randrange(N_SPECIAL, vocab // 2))
            row += [rng.randrange(vocab // 2, vocab) for _ in range(rng.choice([0, 0, 1, 2]))]
        rows.append(row + [EOS_ID] + [PAD_ID] * (length - len(row) - 1))
    return torch.tensor(rows), continues


def words(row: list[int], continues: torch.Tensor) -> list[list[int]]:
    """Brute force: the positions of each non-special word of a row."""
    out = []
    for t, i in enumerate(row):
        if i < N_SPECIAL:
            continue
        if continues[i] and out and out[-1][-1] == t - 1:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def test_masking_statistics_over_many_draws():
    vocab, rng = 2000, random.Random(0)
    ids, continues = synthetic_batch(rng, vocab)
    generator = torch.Generator().manual_seed(0)
    candidates = chosen = masked = swapped = kept = 0
    for _ in range(40):
        out = mask_tokens(ids, continues, vocab, generator)
        sel = out.targets != IGNORE
        assert torch.equal(out.targets[sel], ids[sel])
        assert not sel[ids < N_SPECIAL].any() and torch.equal(out.inputs[ids < N_SPECIAL], ids[ids < N_SPECIAL])
        assert torch.equal(out.inputs[~sel], ids[~sel])  # only chosen positions ever change
        candidates += int((ids >= N_SPECIAL).sum())
        chosen += int(sel.sum())
        masked += int((out.inputs[sel] == MASK_ID).sum())
        changed = sel & (out.inputs != MASK_ID) & (out.inputs != ids)
        assert (out.inputs[changed] >= N_SPECIAL).all()  # random replacements are never special
        swapped += int(changed.sum())
        kept += int((sel & (out.inputs == ids)).sum())
    assert chosen / candidates == pytest.approx(0.15, abs=0.004)
    assert masked / chosen == pytest.approx(0.8, abs=0.01)
    assert swapped / chosen == pytest.approx(0.1, abs=0.01)  # a random id equal to the original counts as kept
    assert kept / chosen == pytest.approx(0.1, abs=0.01)


def test_whole_words_are_chosen_and_treated_together():
    vocab, rng = 300, random.Random(1)
    ids, continues = synthetic_batch(rng, vocab, batch=32)
    out = mask_tokens(ids, continues, vocab, torch.Generator().manual_seed(3), rate=0.4)
    multi = 0
    for b in range(ids.shape[0]):
        for word in words(ids[b].tolist(), continues):
            picked = [bool(out.targets[b, t] != IGNORE) for t in word]
            assert len(set(picked)) == 1, (b, word, picked)  # all pieces of a word, or none
            is_mask = [bool(out.inputs[b, t] == MASK_ID) for t in word]
            assert len(set(is_mask)) == 1  # one fate per word
            multi += len(word) > 1 and picked[0]
    assert multi > 20  # the property was exercised on multi-token words


# ---------------------------------------------------------------------------------------------- head
def test_mlm_head_is_tied_and_matches_bert_for_masked_lm(tmp_path):
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    from rosetta.models.pretrained import load_pretrained

    torch.manual_seed(0)
    hf_config = transformers.BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, max_position_embeddings=40)
    hf = transformers.BertForMaskedLM(hf_config).eval()
    with torch.no_grad():  # give the zero-initialised parts values, so a mix-up would show
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    state = {k: v.clone() for k, v in hf.state_dict().items()  # decoder weight / bias: aliases of tied tensors
             if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")}
    save_file({k: v for k, v in state.items() if "position_ids" not in k}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(hf_config.to_json_string(), encoding="utf-8")
    base = load_pretrained(tmp_path)
    ours = EncoderModel(base.config, mlm_head=True).eval()
    assert ours.mlm.decoder.weight is ours.embeddings.token.weight
    missing, unexpected = ours.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(m.startswith("mlm.") for m in missing)
    prefix = "cls.predictions."
    with torch.no_grad():
        ours.mlm.dense.weight.copy_(state[prefix + "transform.dense.weight"])
        ours.mlm.dense.bias.copy_(state[prefix + "transform.dense.bias"])
        ours.mlm.norm.weight.copy_(state[prefix + "transform.LayerNorm.weight"])
        ours.mlm.norm.bias.copy_(state[prefix + "transform.LayerNorm.bias"])
        ours.mlm.decoder.bias.copy_(state[prefix + "bias"])
    ids = torch.randint(1, 97, (3, 17))
    with torch.no_grad():
        expected = hf(input_ids=ids).logits
        got = ours.mlm_logits(ours(ids))
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
    # tied: one gradient reaches the table from both ends; the head has no decoder matrix of its own
    ours.mlm_logits(ours(ids)).sum().backward()
    assert ours.embeddings.token.weight.grad is not None
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in base.parameters()) + 32 * 32 + 32 \
        + 2 * 32 + 97


def test_encoder_without_head_refuses_mlm_logits():
    model = EncoderModel(bert_config(50, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1))
    with pytest.raises(ValueError, match="mlm_head=True"):
        model.mlm_logits(torch.zeros(2, 16))


# ---------------------------------------------------------------------------------------------- training
def made_up_chinese(n: int, seed: int) -> str:
    """Documents of templated sentences: a masked character is predictable from its context."""
    rng = random.Random(seed)
    who, where, what = ["我", "他", "她", "我们"], ["北京", "上海", "学校", "公园"], ["看书", "跑步", "吃饭", "唱歌"]
    docs = []
    for _ in range(n):
        docs.append("".join(f"{rng.choice(who)}今天在{rng.choice(where)}{rng.choice(what)}。" for _ in range(4)))
    return "\n\n".join(docs) + "\n"


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    """A tiny MLM pretrained through the command line on templated Chinese (shared by the tests below)."""
    tmp_path = tmp_path_factory.mktemp("mlm")
    (tmp_path / "zh.txt").write_text(made_up_chinese(120, 0), encoding="utf-8")
    recipe = tmp_path / "mlm.toml"
    recipe.write_text(f"""
[data]
task = "mlm"
train_src = "{tmp_path / 'zh.txt'}"
max_length = 48
valid_size = 20
[tokenizer]
kind = "wordpiece"
vocab_size = 200
[model]
d_model = 32
n_heads = 4
d_ff = 64
n_encoder_layers = 2
dropout = 0.0
[train]
max_steps = 150
max_tokens = 1024
batch_size = 16
lr = 3e-3
warmup_steps = 10
schedule = "cosine"
label_smoothing = 0.0
eval_every = 150
save_every = 150
log_every = 1
keep_last = 1
precision = "fp32"
device = "cpu"
threads = 1
seed = 1
""", encoding="utf-8")
    result = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


def test_tiny_mlm_run_learns_and_loads_as_an_encoder(mlm_run):
    log = [json.loads(line) for line in (mlm_run / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in log if r["kind"] == "train")
    final = next(r for r in log if r["kind"] == "final")["final_metrics"]
    loaded = load_any(mlm_run)
    assert first["loss"] == pytest.approx(math.log(loaded.tokenizer.vocab_size), rel=0.15)  # untrained: ~uniform
    assert final["valid_loss"] < 0.5 * first["loss"] and final["mlm_accuracy"] > 0.5, final
    config = json.loads((Path(loaded.info["path"]) / "config.json").read_text())
    assert loaded.family == "encoder" and config["task"] == "mlm" and config["mlm_head"] is True
    assert loaded.model.mlm.decoder.weight is loaded.model.embeddings.token.weight  # tied after loading too
    ids = torch.tensor([[BOS_ID, *loaded.tokenizer.encode("我今<mask>在北京看书。"), EOS_ID]])
    logits = loaded.model.mlm_logits(loaded.model(ids))[0, ids[0].tolist().index(MASK_ID)]
    assert loaded.tokenizer.id_to_token(int(logits.argmax())) == "天"


def test_fill_mask_command_and_its_errors(mlm_run, tmp_path):
    from rosetta.decode.fill_mask import fill_mask

    result = runner.invoke(app, ["fill-mask", "--model", str(mlm_run), "--top-k", "3", "我今<mask>在北京看<mask>。"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("<mask> 1: 天 ")
    as_json = runner.invoke(app, ["fill-mask", "--model", str(mlm_run), "--json", "我今<mask>在北京看书。"])
    row = json.loads(as_json.output)
    loaded = load_any(mlm_run)
    assert [r["token"] for r in row] == [t for t, _ in fill_mask(loaded, "我今<mask>在北京看书。", 5)[0]]
    probs = [r["probability"] for r in row]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    no_mask = runner.invoke(app, ["fill-mask", "--model", str(mlm_run), "我今天在北京看书。"])
    assert no_mask.exit_code == 2 and "no <mask>" in no_mask.output
    too_long = runner.invoke(app, ["fill-mask", "--model", str(mlm_run), "我" * 60 + "<mask>"])
    assert too_long.exit_code == 2 and "at most 48" in too_long.output
    plain = EncoderModel(bert_config(20, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1))
    with pytest.raises(ValueError, match="no MLM head"):
        fill_mask(type(loaded)("encoder", plain, loaded.tokenizer, {"path": "x"}), "<mask>")
