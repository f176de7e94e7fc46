"""``rosetta export --format huggingface`` of encoders: BERT (RoBERTa, DistilBERT) with the head the model has.

Reference: tiny random ``transformers`` BERTs made here (``save_pretrained``), read into Rosetta as a checkpoint, or
fine-tuned from with a real run (``[model] pretrained = DIR``; classification with ``[model] pooler = true``).
Each export is read by the Auto class its config.json names (AutoModelForSequenceClassification with id2label,
…ForQuestionAnswering, …ForMaskedLM, AutoModel) and by ``AutoTokenizer``: the same ids on English, Chinese and
accented text, logits / hidden states within 1e-5; ``rosetta.load`` of the export gives what the model gives; a
twin export with one weight changed fails the comparison. A mean-pooled classifier and layouts BERT does not
compute are refused in one line, by the CLI without a traceback.
"""

import json

import pytest
import torch
from hf_dirs import ROBERTA_CORPUS, roberta_directory, runner, save_wordpiece_tokenizer, twin

import rosetta
from rosetta import checkpoint as ckpt
from rosetta.cli import app
from rosetta.compress.hf_export import export_huggingface
from rosetta.data.tokenizer import Tokenizer, encode_texts
from rosetta.decode.loading import load_any
from rosetta.models.encoder import EncoderModel, bert_config
from rosetta.tasks import build_task
from rosetta.train import Trainer
from rosetta.train.recipe import recipe_from_dict

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-5
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789")
VOCAB = (SPECIALS + "the cat sat on mat who wrote it was written by ada love ##lace in dog ran what cafe".split()
         + list(".,?!，。") + list("你好世界猫在这里") + LETTERS + [f"##{c}" for c in LETTERS])
TEXTS = ["The cat sat on the mat.", "Ada Lovelace wrote it in 1843!", "你好，世界。猫在这里", "Café naïve, Éclair?",
         "a dog ran"]
QUESTIONS, CONTEXTS = ["Who wrote it?", "猫在哪里？"], ["It was written by Ada Lovelace in 1843.", "猫在这里，你好。"]
LABELS = {0: "negative", 1: "positive", 2: "neutral"}
BERT = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=64)


def bert_directory(root, cls, seed=0, **config):
    """A random ``cls`` (every parameter perturbed) with BERT's tokenizer files (tokenizer.json, vocab.txt)."""
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    hf = getattr(transformers, cls)(transformers.BertConfig(**BERT, **config)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(root)
    save_wordpiece_tokenizer(root, VOCAB, SPECIALS)
    return root


def as_checkpoint(hf_dir, out):
    """The Hugging Face directory read by Rosetta and saved as a Rosetta checkpoint (its heads, its tokenizer)."""
    loaded = load_any(hf_dir)
    model = loaded.model
    info = {"family": "encoder", "task": loaded.info["task"], "model": model.config.to_dict(),
            "num_labels": model.num_labels, "labels": loaded.info.get("labels"), "pooler": model.pooler is not None,
            "mlm_head": model.mlm is not None, "tokenizer": "pretrained"}
    return ckpt.save_checkpoint(out, model, info, lambda d: loaded.tokenizer.save(str(d / "tokenizer.json")))


def hf_inputs(out, pairs=False):
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    args = (QUESTIONS, CONTEXTS) if pairs else (TEXTS,)
    return tokenizer, tokenizer(*args, padding=True, return_tensors="pt")


def same_ids(loaded, tokenizer):
    """AutoTokenizer's ids are the model's own, text by text (``encode_texts``: what classify / embed read)."""
    assert [tokenizer(t)["input_ids"] for t in TEXTS] == encode_texts(loaded.tokenizer, TEXTS), type(tokenizer)


def close(a, b, tol=TOL) -> bool:
    return a.shape == b.shape and (a - b).abs().max().item() < tol


def outputs(model, enc, which):
    """What the head gives on ``enc``: Rosetta's ``EncoderModel`` or transformers' model."""
    with torch.no_grad():
        if isinstance(model, EncoderModel):
            hidden = model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
            if which == "classifier":
                return model.head(hidden, enc["attention_mask"].bool())
            if which == "qa_outputs":
                return torch.stack(model.span_logits(hidden))
            return model.mlm_logits(hidden) if which == "mlm" else hidden
        result = model(**enc)
        if which == "qa_outputs":
            return torch.stack([result.start_logits, result.end_logits])
        return result.last_hidden_state if which is None else result.logits


AUTO = {"classifier": "AutoModelForSequenceClassification", "qa_outputs": "AutoModelForQuestionAnswering",
        "mlm": "AutoModelForMaskedLM", None: "AutoModel"}


def check_export(model_dir, out, tmp_path, which, architecture, twin_weight, pairs=False):
    """Export ``model_dir``; transformers' Auto class reads the class ``architecture`` and gives our outputs (and a
    twin with ``twin_weight`` moved does not); ``load_any`` of the export gives them too. Returns (ours, hf)."""
    export_huggingface(model_dir, out)
    loaded = load_any(model_dir)
    assert json.loads((out / "config.json").read_text())["architectures"] == [architecture]
    tokenizer, enc = hf_inputs(out, pairs)
    same_ids(loaded, tokenizer)
    auto = getattr(transformers, AUTO[which])
    hf = auto.from_pretrained(out).eval()
    assert type(hf).__name__ == architecture
    ours = outputs(loaded.model, enc, which)
    assert close(outputs(hf, enc, which), ours)
    assert not close(outputs(auto.from_pretrained(twin(out, tmp_path, twin_weight)).eval(), enc, which), ours)
    back = load_any(out)
    assert back.model.config.to_dict() == {**loaded.model.config.to_dict(), "type_vocab_size":
                                          back.model.config.type_vocab_size}
    assert torch.equal(outputs(back.model, enc, which), ours)
    return loaded, hf


# ------------------------------------------------------------------------------------------ each head, BERT
def test_a_bert_classifier_goes_back_as_bert_for_sequence_classification(tmp_path):
    hf_dir = bert_directory(tmp_path / "sc", "BertForSequenceClassification", num_labels=3, id2label=LABELS,
                            label2id={v: k for k, v in LABELS.items()})
    model_dir = as_checkpoint(hf_dir, tmp_path / "model")
    _, hf = check_export(model_dir, tmp_path / "hf", tmp_path, "classifier", "BertForSequenceClassification",
                         "bert.encoder.layer.1.attention.self.value.weight")
    assert hf.config.id2label == LABELS
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert type(tokenizer).__name__.startswith("BertTokenizer") and (tmp_path / "hf" / "vocab.txt").is_file()
    assert torch.equal(rosetta.load(tmp_path / "hf").probabilities(TEXTS), rosetta.load(model_dir).probabilities(TEXTS))


def test_a_bert_span_head_goes_back_as_bert_for_question_answering(tmp_path):
    hf_dir = bert_directory(tmp_path / "qa", "BertForQuestionAnswering")
    model_dir = as_checkpoint(hf_dir, tmp_path / "model")
    check_export(model_dir, tmp_path / "hf", tmp_path, "qa_outputs", "BertForQuestionAnswering", "qa_outputs.weight",
                 pairs=True)
    ours, back = rosetta.load(model_dir), rosetta.load(tmp_path / "hf")
    assert back.answer(QUESTIONS, CONTEXTS) == ours.answer(QUESTIONS, CONTEXTS)


def test_a_bert_mlm_head_goes_back_as_bert_for_masked_lm(tmp_path):
    hf_dir = bert_directory(tmp_path / "mlm", "BertForMaskedLM")
    model_dir = as_checkpoint(hf_dir, tmp_path / "model")
    check_export(model_dir, tmp_path / "hf", tmp_path, "mlm", "BertForMaskedLM", "cls.predictions.bias")
    text = "the cat <mask> on the <mask>."
    assert rosetta.load(tmp_path / "hf").fill(text) == rosetta.load(model_dir).fill(text)


def test_an_embedding_model_goes_back_as_bert_model_with_its_pooler(tmp_path):
    hf_dir = bert_directory(tmp_path / "base", "BertModel")
    model_dir = as_checkpoint(hf_dir, tmp_path / "model")
    loaded, hf = check_export(model_dir, tmp_path / "hf", tmp_path, None, "BertModel",
                              "encoder.layer.0.output.dense.weight")
    _, enc = hf_inputs(tmp_path / "hf")
    with torch.no_grad():
        pooled = torch.tanh(loaded.model.pooler(loaded.model(enc["input_ids"], enc["attention_mask"])[:, 0]))
        assert close(hf(**enc).pooler_output, pooled)
    assert torch.equal(rosetta.load(tmp_path / "hf").embed(TEXTS), rosetta.load(model_dir).embed(TEXTS))


# ------------------------------------------------------------------------------------------ runs
def train(recipe: dict, out):
    rcp = recipe_from_dict(recipe)
    task = build_task(rcp, run_dir=out)
    Trainer(rcp, task, out, progress=False).fit()
    return task


def training(steps: int, lr: float) -> dict:
    return {"max_steps": steps, "max_tokens": 1000, "batch_size": 8, "lr": lr, "warmup_steps": 1,
            "label_smoothing": 0.0, "eval_every": steps, "bleu_every": 0, "save_every": steps, "log_every": 1,
            "keep_last": 1, "precision": "fp32", "device": "cpu", "threads": 1, "seed": 1}


def classification_recipe(tmp_path, pretrained, **model) -> dict:
    data = tmp_path / "train.tsv"
    data.write_text("".join(f"{t}\t{i % 2}\n" for i, t in enumerate(TEXTS * 4)), encoding="utf-8")
    return {"data": {"task": "classification", "train_src": str(data), "valid_src": str(data), "max_length": 32},
            "tokenizer": {"kind": "pretrained"}, "model": {"pretrained": str(pretrained), **model},
            "train": training(4, 3e-3)}


def test_a_classifier_fine_tuned_with_the_pooler_goes_back_as_bert(tmp_path):
    """``[model] pooler = true``: the head reads the checkpoint's own pooler (BertModel's), trains, and the run
    goes to BertForSequenceClassification with the weights it learned."""
    hf_dir = bert_directory(tmp_path / "base", "BertModel")
    task = train(classification_recipe(tmp_path, hf_dir, pooler=True), tmp_path / "run")
    original = transformers.BertModel.from_pretrained(hf_dir).pooler.dense.weight
    assert task.model.pooler is not None and not torch.equal(task.model.pooler.weight.detach().cpu(), original)
    _, hf = check_export(tmp_path / "run", tmp_path / "hf", tmp_path, "classifier", "BertForSequenceClassification",
                         "bert.pooler.dense.weight")
    assert hf.config.id2label == {0: "0", 1: "1"}


def test_a_qa_run_goes_back_as_bert_for_question_answering(tmp_path):
    from test_qa import tiny_squad

    hf_dir = bert_directory(tmp_path / "base", "BertModel")
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps(tiny_squad()), encoding="utf-8")
    recipe = {"data": {"task": "qa", "train_src": str(squad), "valid_src": str(squad), "max_length": 48,
                       "stride": 16}, "model": {"pretrained": str(hf_dir)}, "train": training(3, 3e-3)}
    train(recipe, tmp_path / "run")
    check_export(tmp_path / "run", tmp_path / "hf", tmp_path, "qa_outputs", "BertForQuestionAnswering",
                 "bert.encoder.layer.0.intermediate.dense.weight", pairs=True)


def test_a_minilm_classifier_goes_back_with_minilms_vocabulary(tmp_path):
    """From the built-in all-MiniLM-L6-v2 (its pooler taken along): BertTokenizerFast reads the run's tokenizer,
    vocab.txt is MiniLM's own."""
    from rosetta.models.pretrained import minilm_path

    recipe = classification_recipe(tmp_path, "all-MiniLM-L6-v2", pooler=True)
    train({**recipe, "train": training(1, 0.0)}, tmp_path / "run")
    out = export_huggingface(tmp_path / "run", tmp_path / "hf")
    assert (out / "vocab.txt").read_bytes() == (minilm_path() / "vocab.txt").read_bytes()
    tokenizer, enc = hf_inputs(out)
    loaded = load_any(tmp_path / "run")
    same_ids(loaded, tokenizer)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert close(outputs(hf, enc, "classifier"), outputs(loaded.model, enc, "classifier"))
    minilm = transformers.AutoModel.from_pretrained(minilm_path())
    assert torch.equal(hf.bert.pooler.dense.weight, minilm.pooler.dense.weight)  # lr 0: the checkpoint's pooler


def test_rosettas_own_wordpiece_mlm_goes_back_as_bert_for_masked_lm(tmp_path):
    """A BERT-layout encoder Rosetta pretrained (its own WordPiece, <s> … </s>): PreTrainedTokenizerFast with
    the <s> … </s> post-processor gives the ids the model was trained on, and fill-mask round-trips."""
    tokenizer = Tokenizer.train_wordpiece(TEXTS * 3 + ROBERTA_CORPUS, vocab_size=200, min_frequency=1)
    config = bert_config(tokenizer.vocab_size, d_model=32, n_heads=4, d_ff=48, n_encoder_layers=2, max_len=40)
    torch.manual_seed(0)
    model = EncoderModel(config, mlm_head=True).eval()
    info = {"family": "encoder", "task": "mlm", "model": config.to_dict(), "mlm_head": True, "tokenizer": "wordpiece",
            "max_length": 40}
    model_dir = ckpt.save_checkpoint(tmp_path / "mlm", model, info, tokenizer.save)
    check_export(model_dir, tmp_path / "hf", tmp_path, "mlm", "BertForMaskedLM",
                 "bert.encoder.layer.1.output.dense.weight")
    text = "the cat <mask> on the mat."
    assert rosetta.load(tmp_path / "hf").fill(text) == rosetta.load(model_dir).fill(text)


# ------------------------------------------------------------------------------------------ RoBERTa, DistilBERT
@pytest.mark.parametrize("name, which, auto", [
    ("RobertaForSequenceClassification", "classifier", "AutoModelForSequenceClassification"),
    ("RobertaForMaskedLM", "mlm", "AutoModelForMaskedLM")])
def test_a_roberta_goes_back_as_roberta(name, which, auto, tmp_path):
    """Positions from pad + 1; the pooler + classifier as classifier.dense + out_proj, the MLM head as lm_head.
    (RoBERTa gives the padding positions row pad: only the real tokens are compared.)"""
    labels = {0: "no", 1: "yes"}
    extra = {} if which == "mlm" else dict(num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()})
    hf_dir, _ = roberta_directory(tmp_path / "roberta", name, **extra)
    model_dir = as_checkpoint(hf_dir, tmp_path / "model")
    export_huggingface(model_dir, tmp_path / "hf")
    hf = getattr(transformers, auto).from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == name
    loaded = load_any(model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert [tokenizer(t)["input_ids"] for t in ROBERTA_CORPUS[:5]] == encode_texts(loaded.tokenizer, ROBERTA_CORPUS[:5])
    enc = tokenizer(ROBERTA_CORPUS[:5], padding=True, return_tensors="pt")
    real = enc["attention_mask"].bool() if which == "mlm" else slice(None)
    ours = outputs(loaded.model, enc, which)[real]
    assert close(outputs(hf, enc, which)[real], ours)
    assert torch.equal(outputs(load_any(tmp_path / "hf").model, enc, which)[real], ours)
    if which == "classifier":
        assert hf.config.id2label == labels


def test_a_distilbert_span_head_goes_back_as_distilbert(tmp_path):
    root = bert_directory(tmp_path / "bert", "BertModel")  # for its tokenizer files
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(vocab_size=len(VOCAB), dim=32, n_layers=2, n_heads=4, hidden_dim=48,
                                           max_position_embeddings=64)
    hf = transformers.DistilBertForQuestionAnswering(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf_dir = tmp_path / "distilbert"
    hf.save_pretrained(hf_dir)
    for name in ("tokenizer.json", "vocab.txt"):
        (hf_dir / name).write_bytes((root / name).read_bytes())
    model_dir = as_checkpoint(hf_dir, tmp_path / "model")
    check_export(model_dir, tmp_path / "hf", tmp_path, "qa_outputs", "DistilBertForQuestionAnswering",
                 "distilbert.transformer.layer.0.ffn.lin1.weight", pairs=True)


# ------------------------------------------------------------------------------------------ refused
def own_encoder(tmp_path, name, num_labels=0, **flags):
    tokenizer = Tokenizer.train_chars(TEXTS)
    config = bert_config(tokenizer.vocab_size, d_model=32, n_heads=4, d_ff=48, n_encoder_layers=1, max_len=40, **flags)
    info = {"family": "encoder", "task": "classification" if num_labels else "embedding", "model": config.to_dict(),
            "num_labels": num_labels, "pooler": False, "tokenizer": "char"}
    return ckpt.save_checkpoint(tmp_path / name, EncoderModel(config, num_labels=num_labels), info, tokenizer.save)


@pytest.mark.parametrize("name, flags, words", [
    ("mean-pooled", dict(num_labels=2), ["reads the mean of its tokens", "pooler = true", "rosetta serve"]),
    ("pre-ln", dict(norm_first=True), ["norm_first=True"]),
    ("rotary", dict(positional="rope"), ["positional='rope'"]),
])
def test_encoders_without_a_hugging_face_class_are_refused_in_one_line(name, flags, words, tmp_path):
    model_dir = own_encoder(tmp_path, name, **flags)
    with pytest.raises(ValueError) as error:
        export_huggingface(model_dir, tmp_path / "hf")
    assert "\n" not in str(error.value) and all(w in str(error.value) for w in words), str(error.value)
    result = runner.invoke(app, ["export", "--model", str(model_dir), "--format", "huggingface", "--out",
                                 str(tmp_path / "hf")])
    assert result.exit_code == 2 and "Traceback" not in result.output and words[0] in result.output
    assert not (tmp_path / "hf").exists() and not list(tmp_path.glob(".hf.*"))
