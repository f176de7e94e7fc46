"""Training recipes: a TOML file of four tables, overridable from the command line with ``--set``.

    [data]       what to learn from (a known corpus, or your own files)
    [tokenizer]  subword vocabulary
    [model]      a ModelConfig preset and any of its fields
    [train]      optimisation, evaluation, checkpoints
    [decode]     how validation BLEU and `rosetta translate` decode by default

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rosetta.decode.defaults import DecodeOptions


@dataclass
class DataSection:
    task: str = "translation"  # translation | text-to-text | lm | classification | image-classification | mlm
    #                                | electra | qa | summarisation
    corpus: str | None = None  # a registry name (rosetta data list), or None with the files below
    # text-to-text: several translation corpora in one model, each source prefixed with its task
    # ([[data.mixture]] tables: corpus, src_lang, tgt_lang, prefix), e.g. "translate English to Chinese: "
    mixture: list[dict[str, Any]] | None = None
    src_lang: str = "en"
    tgt_lang: str = "zh"
    train_src: str | None = None  # your own parallel files, one sentence a line
    train_tgt: str | None = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    clean: list[str] | None = None  # clean-up steps (None: the corpus's defaults)
    max_train_examples: int | None = None
    max_length: int = 128  # training pairs with more tokens on either side are dropped
    block_size: int = 64  # LM: tokens per training sequence (the model's context)
    windows: str = "random"  # LM: random (nanoGPT: windows at random offsets) | chunks (non-overlapping, shuffled)
    valid_size: int | None = None  # validation examples kept (LM: windows scored at each periodic evaluation;
    #                                images: training images held out as validation, default 5,000)
    stride: int = 128  # QA: tokens shared by neighbouring windows of a context longer than max_length
    augment_shift: int = 0  # images: shift each training image by up to this many pixels (a fresh draw each time)
    seed: int = 1


@dataclass
class TokenizerSection:
    kind: str = "bpe"  # bpe | char | pretrained | wordpiece (BERT-Chinese's: CJK characters + "##" pieces; mlm)
    vocab_size: int = 8000
    joint: bool = True
    min_frequency: int = 2


@dataclass
class ModelSection:
    preset: str = "small"
    overrides: dict[str, Any] = field(default_factory=dict)  # any ModelConfig field
    pretrained: str | None = None  # a Hugging Face BERT directory (or "all-MiniLM-L6-v2") for encoder fine-tuning
    load_weights: bool = True  # False: the pretrained architecture and tokenizer, fresh weights (from scratch)
    pooler: bool = False  # classification: the head reads BERT's pooler tanh(W h_[CLS]) (the checkpoint's, if it has
    #                       one), as BertForSequenceClassification, instead of the mean of the tokens
    cross_init: str = "self"  # BERT2BERT's new cross-attention: "self" (a copy of self-attention) | "random"
    generator_fraction: float = 0.25  # ELECTRA: the generator's d_model, n_heads, d_ff as a share of the model's


@dataclass
class TrainSection:
    max_steps: int = 100_000
    max_minutes: float | None = None  # wall-clock budget (for laptop recipes)
    max_tokens: int = 4096  # target tokens per batch (padding included)
    batch_size: int = 32  # LM / classification: sequences per batch
    accum_steps: int = 1
    optimizer: str = "adam"  # adam (AdamW with weight_decay) | adafactor (T5's; lr is its relative step ρ)
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    warmup_steps: int = 4000
    schedule: str = "inverse_sqrt"  # inverse_sqrt (the paper) | cosine | linear | constant
    min_lr: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    label_smoothing: float = 0.1
    rtd_weight: float = 50.0  # ELECTRA: loss = generator MLM loss + rtd_weight · replaced-token-detection loss (λ)
    clip_norm: float = 1.0
    precision: str = "auto"  # auto (bf16 where the hardware has it: CUDA, AVX-512 BF16/AMX CPUs) | fp32 | bf16
    device: str = "auto"
    compile: bool = False
    threads: int | None = None
    eval_every: int = 500
    bleu_every: int = 1000
    bleu_sentences: int = 300  # validation BLEU on this many sentences (greedy), to keep it cheap
    save_every: int = 1000
    keep_last: int = 5
    average_last: int = 1  # average the last N checkpoints into the final model (1: no averaging)
    patience: int | None = None  # early stop after this many evaluations without improvement
    log_every: int = 50
    seed: int = 1


# The [decode] section is the decoder's own options dataclass: its defaults live in one place.
DecodeSection = DecodeOptions


@dataclass
class Recipe:
    data: DataSection = field(default_factory=DataSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    decode: DecodeSection = field(default_factory=DecodeSection)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SECTIONS = {"data": DataSection, "tokenizer": TokenizerSection, "model": ModelSection,
            "train": TrainSection, "decode": DecodeSection}


def _section(name: str, values: dict[str, Any]):
    cls = SECTIONS[name]
    known = {f.name for f in fields(cls)}
    if name == "model":  # every key that is not a ModelSection field is a ModelConfig field
        values = dict(values)
        overrides = dict(values.pop("overrides", {}))
        overrides.update({k: values.pop(k) for k in list(values) if k not in known})
        values["overrides"] = overrides
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"[{name}] has unknown keys {unknown}; known keys: {sorted(known)}")
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return cls(**values)


def recipe_from_dict(data: dict[str, Any]) -> Recipe:
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown recipe tables {unknown}; a recipe has {sorted(SECTIONS)}")
    return Recipe(**{name: _section(name, data.get(name, {})) for name in SECTIONS})


def parse_override(item: str) -> tuple[list[str], Any]:
    """``train.max_steps=200`` → (["train", "max_steps"], 200). Values are Python/TOML literals or strings."""
    if "=" not in item:
        raise ValueError(f"--set expects section.key=value, got {item!r}")
    key, raw = item.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or path[0] not in SECTIONS:
        raise ValueError(f"--set key {key!r} must start with one of {sorted(SECTIONS)}, e.g. train.max_steps=200")
    text = raw.strip()
    lowered = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in lowered:
        return path, lowered[text.lower()]
    try:
        return path, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return path, text


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a TOML recipe (or start from defaults) and apply ``--set section.key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"recipe {path} does not exist (recipes ship in configs/)")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path} is not valid TOML: {e}") from e
    for item in overrides or []:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return recipe_from_dict(data)
