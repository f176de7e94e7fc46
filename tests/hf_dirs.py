"""Helpers for the tests of Hugging Face directories (tests/test_hf_*.py): a twin with one weight changed, and the
CLI run in-process, the tiny Marian directory (``marian_directory``) that more than one test module reads, and a
few steps of translation fine-tuning from a directory (``fine_tune_translation``)."""

import json
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from rosetta.cli import app

runner = CliRunner()


def twin(directory, tmp_path, name, index=0, delta=1.0):
    """A copy of ``directory`` whose tensor ``name`` has one element (flat ``index``) moved by ``delta``."""
    copy = tmp_path / f"twin-{name}"
    shutil.copytree(directory, copy)
    tensors = load_file(copy / "model.safetensors")
    tensors[name].view(-1)[index] += delta
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    return copy


def cli(*args):
    """``rosetta ARGS`` in-process; its output (the command must succeed)."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


EN = ["The cat sits on the mat.", "I am a student.", "She reads a book every evening.", "We like green apples.",
      "The weather is nice today.", "Where is the train station?", "He writes long letters to his mother.",
      "They play football in the park.", "My brother drinks coffee.", "The children are sleeping.",
      "Our teacher is very kind.", "Can you help me, please?"]
DE = ["Die Katze sitzt auf der Matte.", "Ich bin ein Student.", "Sie liest jeden Abend ein Buch.",
      "Wir mögen grüne Äpfel.", "Das Wetter ist heute schön.", "Wo ist der Bahnhof?",
      "Er schreibt lange Briefe an seine Mutter.", "Sie spielen Fußball im Park.", "Mein Bruder trinkt Kaffee.",
      "Die Kinder schlafen.", "Unser Lehrer ist sehr nett.", "Kannst du mir bitte helfen?"]
DROPPED = ("▁mother", "ü")  # pieces the spm models know but vocab.json leaves out: they become <unk>
MAX_LENGTH = 20


def _train_spm(lines: list[str], out: Path) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 3), model_prefix=str(out), vocab_size=80, model_type="unigram",
        hard_vocab_limit=False, character_coverage=1.0, bos_id=-1, eos_id=1, unk_id=0, pad_id=-1, minloglevel=2)
    Path(f"{out}.model").rename(out)
    Path(f"{out}.vocab").unlink()


def _vocab(directory: Path) -> dict[str, int]:
    """Marian's layout: </s> 0, <unk> 1, the pieces of both spm models, <pad> last."""
    import sentencepiece as spm

    pieces = []
    for name in ("source.spm", "target.spm"):
        sp = spm.SentencePieceProcessor(model_file=str(directory / name))
        pieces += [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                   if not (sp.is_control(i) or sp.is_unknown(i)) and sp.id_to_piece(i) not in DROPPED]
    vocab = {"</s>": 0, "<unk>": 1, **{p: i + 2 for i, p in enumerate(dict.fromkeys(pieces))}}
    vocab["<pad>"] = len(vocab)
    return vocab


def marian_directory(directory: Path) -> Path:
    """A tiny opus-mt-shaped Marian directory in ``directory`` (English → German): two SentencePiece models
    trained on EN / DE, a vocab.json of their pieces (less ``DROPPED``), ``MarianTokenizer``'s files, a random
    ``MarianMTModel`` (d_model 32, 2 + 2 layers, swish, scaled embeddings, a random ``final_logits_bias``) saved
    with ``save_pretrained``, and a generation_config.json as opus-mt ships one."""
    import sentencepiece  # noqa: F401  (the callers skip when it is missing)
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    _train_spm(EN, directory / "source.spm")
    _train_spm(DE, directory / "target.spm")
    vocab = _vocab(directory)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        MarianTokenizer(str(directory / "source.spm"), str(directory / "target.spm"),
                        str(directory / "vocab.json")).save_pretrained(directory)
    pad = len(vocab) - 1
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, activation_function="swish",
        scale_embedding=True, pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=0,
        max_position_embeddings=64, init_std=0.3)
    model = MarianMTModel(config)
    with torch.no_grad():  # random, so that EOS ends some outputs early and others reach max_length
        model.final_logits_bias.normal_(0, 0.3)
        model.final_logits_bias[0, 0] += 6.0
    model.save_pretrained(directory)
    generation = {"bad_words_ids": [[pad]], "decoder_start_token_id": pad, "eos_token_id": 0,
                  "forced_eos_token_id": 0, "max_length": MAX_LENGTH, "num_beams": 4, "pad_token_id": pad,
                  "renormalize_logits": True}
    (directory / "generation_config.json").write_text(json.dumps(generation), encoding="utf-8")
    return directory


EOT = "<|endoftext|>"
CORPUS = ["Hello world, the cat sat on the mat.", "The quick brown fox jumps over the lazy dog.",
          "Café naïve résumé, Ångström.", "你好世界，今天天气很好。", "emoji 🙂🚀 and more 🙂"] * 20


def train_gpt2_tokenizer():
    """GPT-2's tokenizer design, trained on CORPUS: ByteLevel pre-tokenizer and decoder, BPE, <|endoftext|> last."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=299, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tk.add_special_tokens([EOT])
    return tk


def write_gpt2_dir(path, seed=0, **options):
    """A random GPT2LMHeadModel (GPT2Config ``options`` over the sizes below) and its tokenizer, saved by
    transformers into ``path``."""
    import transformers

    tk = train_gpt2_tokenizer()
    eot = tk.token_to_id(EOT)
    sizes = dict(vocab_size=tk.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2, n_head=4, n_inner=48)
    config = transformers.GPT2Config(**{**sizes, **options}, bos_token_id=eot, eos_token_id=eot, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # larger than GPT-2's N(0, 0.02²), biases and norms away from 0 and 1: mix-ups show
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.1) if name.endswith("bias") else p.normal_(1.0, 0.2) if ".ln_" in name \
                else p.normal_(0.0, 0.25)
        model.transformer.wte.weight[[0, 1, 3]] *= 1.5  # "!", '"', "$" get generated: nothing may suppress them
    model.save_pretrained(path)
    transformers.GPT2TokenizerFast(tokenizer_object=tk, bos_token=EOT, eos_token=EOT,
                                   unk_token=EOT).save_pretrained(path)
    return path


LINES = ["translate English to German: The cat sits on the mat.", "Die Katze sitzt auf der Matte.",
         "translate English to German: I am a student.", "Ich bin ein Student.",
         "summarize: the weather is nice today and the children play football in the park.",
         "translate German to English: Wo ist der Bahnhof?", "Where is the train station?"]
LAYOUTS = {"t5": dict(feed_forward_proj="relu", tie_word_embeddings=True),
           "flan-t5": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)}
T5_MAX_LENGTH = 16


def t5_directory(root: Path, layout: str, model_type: str = "t5", seed: int = 0) -> Path:
    """A tiny T5 directory in ``root``: a SentencePiece model trained on ``LINES`` (T5's ids: <pad> 0, </s> 1,
    <unk> 2) and a random ``T5ForConditionalGeneration`` (d_model 32, 2 + 2 layers) of ``LAYOUTS[layout]``,
    saved with ``save_pretrained``, with a generation_config.json (max_length ``T5_T5_MAX_LENGTH``)."""
    import sentencepiece as spm
    import transformers

    root.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(LINES * 3), model_prefix=str(root / "sp"), vocab_size=90, model_type="unigram",
        hard_vocab_limit=False, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    (root / "sp.model").rename(root / "spiece.model")
    (root / "sp.vocab").unlink()
    pieces = spm.SentencePieceProcessor(model_file=str(root / "spiece.model")).get_piece_size()
    torch.manual_seed(seed)
    config = transformers.T5Config(vocab_size=pieces + 4, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **LAYOUTS[layout])
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():  # every weight random enough that outputs differ in length and content
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        if not LAYOUTS[layout]["tie_word_embeddings"]:  # unscaled head: logits ~20, not ~100, so fp32 rounding
            model.lm_head.weight.mul_(0.2)                # stays below 1e-5
        model.lm_head.weight[1] *= 4  # </s> likelier: some outputs end early, others reach max_length
    model.save_pretrained(root)
    if model_type != "t5":
        hf = json.loads((root / "config.json").read_text())
        (root / "config.json").write_text(json.dumps({**hf, "model_type": model_type}))
    generation = {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0, "max_length": T5_MAX_LENGTH,
                  "bad_words_ids": [[0]]}  # as opus-mt's: no <pad> inside an output
    (root / "generation_config.json").write_text(json.dumps(generation))
    return root


SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
ROBERTA_CORPUS = ["The cat sat on the mat.", "Ada Lovelace wrote it in 1843!", "a dog ran after the cat",
          "Zebra quartz, éclair? 猫 🐱", "who wrote the notes on the engine"] * 4
ROBERTA = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
               max_position_embeddings=40, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)


def save_roberta_tokenizer(directory) -> int:
    """A byte-level BPE trained on ROBERTA_CORPUS: tokenizer.json (RoBERTa's <s> … </s> post-processor) for Rosetta,
    vocab.json + merges.txt for transformers' RobertaTokenizer. Returns the vocabulary size."""
    from tokenizers import AddedToken, ByteLevelBPETokenizer, processors

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(ROBERTA_CORPUS, vocab_size=300, min_frequency=1, special_tokens=SPECIALS)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])  # as RobertaTokenizer's mask
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.save(str(directory / "tokenizer.json"))
    tok.save_model(str(directory))
    return tok.get_vocab_size()


def roberta_reference_tokenizer(directory):
    """transformers' RobertaTokenizer from vocab.json + merges.txt, its <mask> taking the space before it (as in
    roberta-base's own tokenizer files)."""
    import transformers
    from tokenizers import AddedToken

    return transformers.RobertaTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"),
                                         mask_token=AddedToken("<mask>", lstrip=True, rstrip=False))


def roberta_directory(root, name, seed=0, **extra):
    """A random RoBERTa ``name`` model (every parameter perturbed) and its tokenizer files in ``root``."""
    import transformers

    root.mkdir(parents=True, exist_ok=True)
    vocab = save_roberta_tokenizer(root)
    torch.manual_seed(seed)
    hf = getattr(transformers, name)(transformers.RobertaConfig(vocab_size=vocab, **ROBERTA, **extra)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(root)
    return root, hf


def save_wordpiece_tokenizer(directory: Path, vocab: list[str], specials: list[str]) -> None:
    """BERT's WordPiece pipeline built with ``tokenizers`` over ``vocab`` ([CLS] at 2, [SEP] at 3) as tokenizer.json,
    and vocab.txt (what BertTokenizer, the reference, reads)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(specials)
    tok.save(str(Path(directory) / "tokenizer.json"))
    (Path(directory) / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")


def fine_tune_translation(pretrained: Path, pairs: list[tuple[str, str]], tmp_path: Path, steps: int) -> Path:
    """A run fine-tuned ``steps`` steps (en → zh, fp32, one thread, seed 1) from the directory ``pretrained`` on
    ``pairs`` (its first three also the valid split); the run's directory."""
    from rosetta.tasks import build_task
    from rosetta.train import Trainer
    from rosetta.train.recipe import recipe_from_dict

    files = {}
    for split, rows in (("train", pairs), ("valid", pairs[:3])):
        for side, lines in (("src", [s for s, _ in rows]), ("tgt", [t for _, t in rows])):
            files[f"{split}_{side}"] = str(tmp_path / f"{split}_{side}")
            Path(files[f"{split}_{side}"]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = recipe_from_dict({
        "data": {"task": "translation", "src_lang": "en", "tgt_lang": "zh", "max_length": 64, **files},
        "model": {"pretrained": str(pretrained)},
        "train": {"max_steps": steps, "max_tokens": 400, "batch_size": 12, "lr": 3e-3, "warmup_steps": 1,
                  "label_smoothing": 0.0, "eval_every": steps, "bleu_every": 0, "save_every": steps,
                  "log_every": 1, "keep_last": 1, "precision": "fp32", "device": "cpu", "threads": 1, "seed": 1}})
    run = tmp_path / "run"
    Trainer(recipe, build_task(recipe, run_dir=run), run, progress=False).fit()
    return run
