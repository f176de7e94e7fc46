"""Summarisation: the ROUGE wrapper against rouge-score itself, the sentence splitter's rules, Lead-1 and the
extractive oracle against brute force, SciTLDR reading and de-duplication, and a tiny summariser trained end to
end (Rosetta BPE, and a tiny random BERT for the BERT2BERT path) that ``rosetta.load`` and the CLI run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from rouge_score import rouge_scorer
from typer.testing import CliRunner

import rosetta
from rosetta.cli import app
from rosetta.data.summaries import Document, load_summaries, split_sentences
from rosetta.data.tokenizer import PretrainedTokenizer
from rosetta.tasks.metrics import rouge
from rosetta.tasks.summarise import baseline_summaries, extractive_oracle, lead

runner = CliRunner()
SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


# ------------------------------------------------------------------------------------------------ ROUGE
def test_rouge_single_reference_equals_rouge_score():
    hyps = ["the cats were sitting on the mats", "a model learns to translate", "", "Results! Results?"]
    refs = ["a cat sat on the mat", "we train a model that translates text", "nothing here", "results"]
    got = rouge(hyps, [[r] for r in refs])
    for name in ("rouge1", "rouge2", "rougeL"):
        want = 100 * sum(SCORER.score(r, h)[name].fmeasure for h, r in zip(hyps, refs)) / len(hyps)
        assert getattr(got, name) == pytest.approx(want, abs=1e-9)
    assert got.n_documents == 4
    assert 0 < got.rouge2 < got.rouge1  # stemming: "cats"/"cat", "sitting"/"sit" count for ROUGE-1


def test_multi_reference_takes_the_reference_with_the_best_rouge1():
    """Reference A wins ROUGE-1 (more shared words, out of order), B wins ROUGE-2 and ROUGE-L (a shared
    bigram run): the chosen reference is A for all three (SciTLDR's cal-rouge.py), not a per-metric max."""
    hyp = "neural networks learn fast representations"
    a = "representations fast learn networks neural quickly"
    b = "deep neural networks learn slowly"
    sa, sb = SCORER.score(a, hyp), SCORER.score(b, hyp)
    assert sa["rouge1"].fmeasure > sb["rouge1"].fmeasure and sb["rouge2"].fmeasure > sa["rouge2"].fmeasure
    got = rouge([hyp], [[b, a]])
    assert (got.rouge1, got.rouge2, got.rougeL) == pytest.approx(
        tuple(100 * sa[n].fmeasure for n in ("rouge1", "rouge2", "rougeL")))
    tie = rouge([hyp], [[a, a + " extra words"]])  # on a tie (or worse), the first reference stays
    assert tie.rouge1 == pytest.approx(100 * sa["rouge1"].fmeasure)


def test_rouge_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="one list per document"):
        rouge(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="not a string"):
        rouge(["a"], ["a"])
    with pytest.raises(ValueError, match="at least one reference"):
        rouge(["a"], [[]])


# ------------------------------------------------------------------------------------------------ sentences
@pytest.mark.parametrize("text, want", [
    ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
    ("We use CNNs, e.g. ResNet. It works.", ["We use CNNs, e.g. ResNet.", "It works."]),
    ("Smith et al. Show this. Then J. Doe agreed.", ["Smith et al. Show this.", "Then J. Doe agreed."]),
    ("Accuracy is 3.5 points higher. 2 models won.", ["Accuracy is 3.5 points higher.", "2 models won."]),
    ('He said "stop." Then (A) left.', ['He said "stop."', "Then (A) left."]),
    ("No split here. word2vec starts in lower case.", ["No split here. word2vec starts in lower case."]),
    ("  ", []),
])
def test_split_sentences_follows_its_rules(text, want):
    assert split_sentences(text) == want


def test_lead_and_oracle_against_brute_force():
    sentences = ["Deep nets are popular.", "We propose a sparse attention method for long documents.",
                 "Experiments show gains."]
    refs = ["A sparse attention method for long documents.", "Sparse attention helps."]
    assert lead(sentences) == sentences[0] and lead(sentences, 2) == " ".join(sentences[:2])
    best = max(sentences, key=lambda s: max(SCORER.score(r, s)["rougeL"].fmeasure for r in refs))
    assert extractive_oracle(sentences, refs) == best == sentences[1]
    doc = Document(tuple(sentences), tuple(refs))
    assert baseline_summaries([doc], "lead-1") == [sentences[0]]
    assert baseline_summaries([doc], "oracle") == [sentences[1]]
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_summaries([doc], "lead-3")


# ------------------------------------------------------------------------------------------------ data
WORDS = ("model network attention training data method results task learning graph sparse neural "
         "robust fast accuracy language images").split()


def fake_record(rng: random.Random, i: int, refs: int = 1, title: str | None = None) -> dict:
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))).capitalize() + "."
                 for _ in range(rng.randint(2, 5))]
    target = [sentences[0][:-1].lower()] + [" ".join(rng.sample(WORDS, 5)) for _ in range(refs - 1)]
    return {"source": sentences, "source_labels": [1] + [0] * (len(sentences) - 1), "rouge_scores": [],
            "paper_id": f"p{i}", "target": target, "title": title or f"Paper {i}"}


def write_scitldr(root: Path, n_train: int = 40, n_dev: int = 12) -> Path:
    """A SciTLDR-shaped corpus in root/scitldr; dev repeats one train title, one train abstract, and one of
    its own abstracts (three records that de-duplication drops)."""
    rng = random.Random(0)
    train = [fake_record(rng, i) for i in range(n_train)]
    dev = [fake_record(rng, 100 + i, refs=1 + i % 3) for i in range(n_dev)]
    dev.append(fake_record(rng, 200, title=train[0]["title"].upper()))  # a resubmission: same title
    dev.append({**fake_record(rng, 201), "source": train[1]["source"]})  # same abstract as a train paper
    dev.append({**fake_record(rng, 202), "source": dev[0]["source"]})  # a repeat within dev
    folder = root / "scitldr"
    folder.mkdir(parents=True)
    for name, records in (("train", train), ("dev", dev)):
        (folder / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    return root


def test_load_summaries_drops_repeats_of_train_and_within_dev(tmp_path):
    root = write_scitldr(tmp_path)
    train = load_summaries("scitldr", "train", root)
    dev = load_summaries("scitldr", "valid", root)
    raw = load_summaries("scitldr", "valid", root, dedupe=False)
    assert (len(train), len(raw), len(dev)) == (40, 15, 12)
    assert [d.doc_id for d in dev] == [f"p{100 + i}" for i in range(12)]
    assert dev[1].references and len(dev[2].references) == 3
    with pytest.raises(ValueError, match="withheld"):
        load_summaries("scitldr", "test", root)


def test_shared_scitldr_dev_keeps_614_of_619():
    try:
        raw = load_summaries("scitldr", "valid", dedupe=False)
    except FileNotFoundError:
        pytest.skip("the shared SciTLDR copy ($ROSETTA_DATA/scitldr) is not on this machine")
    assert (len(raw), len(load_summaries("scitldr", "valid"))) == (619, 614)


# ------------------------------------------------------------------------------------------------ training
def tiny_bert_dir(root: Path, texts: list[str]) -> Path:
    """A random 2-layer BERT saved by transformers (config.json, model.safetensors) with a WordPiece
    tokenizer.json whose vocabulary is the words of ``texts`` (BERT's special tokens at 0–4)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    words = sorted({w for t in texts for w in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(t.lower())
                    for w in [w[0]]})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                 ("[SEP]", 3)])
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)
    path = root / "tiny-bert"
    transformers.BertModel(config).save_pretrained(str(path), safe_serialization=True)
    tok.save(str(path / "tokenizer.json"))
    return path


def train_summariser(root: Path, model_table: str) -> Path:
    recipe = root / "recipe.toml"
    recipe.write_text(f"""
[data]
task = "summarisation"
corpus = "scitldr"
max_length = 48
[tokenizer]
vocab_size = 200
[model]
{model_table}
[train]
max_steps = 4
max_tokens = 1024
lr = 1e-3
warmup_steps = 1
eval_every = 0
bleu_sentences = 5
save_every = 4
precision = "fp32"
device = "cpu"
[decode]
beam = 2
max_len_ratio = 0.0
max_len_offset = 8
no_repeat_ngram_size = 2
""")
    out = root / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "--quiet", "--data-dir", str(root)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    root = write_scitldr(tmp_path_factory.mktemp("bpe"))
    return root, train_summariser(root, 'preset = "tiny"')


def test_trained_summariser_loads_and_summarises(bpe_run):
    root, run = bpe_run
    translator = rosetta.load(run)
    assert translator.info["task"] == "summarisation" and translator.info["family"] == "translation"
    final = json.loads((run / "model" / "config.json").read_text())["training"]["final_metrics"]
    assert {"rouge1", "rouge2", "rougeL", "valid_loss"} <= set(final)
    docs = load_summaries("scitldr", "valid", root)
    outs = translator.translate([d.text for d in docs[:3]] + [""])
    assert len(outs) == 4 and outs[3] == "" and all(isinstance(o, str) for o in outs)


def test_summarise_cli_reads_arguments_files_and_stdin(bpe_run, tmp_path):
    root, run = bpe_run
    docs = [d.text for d in load_summaries("scitldr", "valid", root)[:2]]
    want = rosetta.load(run).translate(docs)
    file = tmp_path / "docs.txt"
    file.write_text("\n".join(docs) + "\n", encoding="utf-8")
    for args, stdin in (([*docs], None), ([str(file)], None), ([], "\n".join(docs) + "\n")):
        result = runner.invoke(app, ["summarise", "--model", str(run), *args], input=stdin)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == want
    bad = runner.invoke(app, ["summarise", "--model", str(run), "--beam", "0", "x"])
    assert bad.exit_code == 2 and "--beam must be at least 1" in bad.output


def test_evaluate_prints_rouge_for_a_run_and_the_baselines(bpe_run):
    root, run = bpe_run
    docs = load_summaries("scitldr", "valid", root)
    for model, summaries in (("lead-1", [split_sentences(d.text)[0] for d in docs]),
                             (str(run), rosetta.load(run).translate([d.text for d in docs]))):
        result = runner.invoke(app, ["evaluate", "--model", model, "--corpus", "scitldr", "--split", "valid",
                                     "--data-dir", str(root), "--json"])
        assert result.exit_code == 0, result.output
        got = json.loads(result.output)
        want = 100 * sum(max((SCORER.score(r, s) for r in d.references), key=lambda x: x["rouge1"].fmeasure)
                         ["rougeL"].fmeasure for s, d in zip(summaries, docs)) / len(docs)
        assert got["rougeL"] == pytest.approx(want) and got["n_documents"] == 12


@pytest.mark.parametrize("copy", [False, True], ids=["generate", "copy"])
def test_bert2bert_recipe_trains_with_the_pretrained_vocabulary(tmp_path, copy):
    """``copy_attention = true`` (the pointer-generator) trains, saves, loads and decodes through the same path."""
    root = write_scitldr(tmp_path)
    texts = [d.text for d in load_summaries("scitldr", "train", root)] + \
            [r for d in load_summaries("scitldr", "valid", root, dedupe=False) for r in d.references]
    bert = tiny_bert_dir(tmp_path, texts)
    run = train_summariser(root, f'pretrained = "{bert}"' + ("\ncopy_attention = true" if copy else ""))
    translator = rosetta.load(run)
    assert translator.config.copy_attention is copy and (translator.model.copy_gate is not None) is copy
    assert isinstance(translator.src_tokenizer, PretrainedTokenizer)
    cls, sep = translator.src_tokenizer.bos_id, translator.src_tokenizer.eos_id
    assert (translator.config.bos_id, translator.config.eos_id, cls, sep) == (2, 3, 2, 3)
    assert translator.encode_source("model data")[0] == cls and translator.encode_source("model data")[-1] == sep
    assert translator.info["pretrained_weights"] is True and translator.info["cross_init"] == "self"
    out = translator.translate(["Sparse attention improves accuracy."])[0]
    assert "[CLS]" not in out and "[SEP]" not in out


def test_source_use_benchmark_measures_the_references_nll():
    """benchmarks/source_use.py (does a summariser read its source?): its NLL equals F.cross_entropy over the
    reference tokens, and a source change changes it for a model whose cross-attention is not zero."""
    import importlib.util

    import torch
    import torch.nn.functional as F
    from tiny_models import tiny_summariser_dir

    from rosetta.data.batching import pad as pad_ids

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "source_use.py"
    spec = importlib.util.spec_from_file_location("rosetta_bench_source_use", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = rosetta.load(tiny_summariser_dir()).model
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    sources = [torch.randint(4, cfg.src_vocab_size, (n,), generator=g).tolist() for n in (5, 9, 3)]
    targets = [torch.randint(4, cfg.tgt_vocab_size, (n,), generator=g).tolist() for n in (4, 2, 6)]
    got = bench.mean_nll(model, sources, targets, batch=2)
    tgt = pad_ids([[cfg.bos_id, *t, cfg.eos_id] for t in targets], cfg.pad_id)
    with torch.no_grad():
        logits = model(pad_ids(sources, cfg.pad_id), tgt[:, :-1]).double()
    want = F.cross_entropy(logits.transpose(1, 2), tgt[:, 1:], ignore_index=cfg.pad_id).item()
    assert got == pytest.approx(want, abs=1e-5)
    assert abs(bench.mean_nll(model, sources[::-1], targets) - got) > 1e-4
