"""Subword tokenizer: a thin wrapper over a Hugging Face ``tokenizers.Tokenizer`` (BPE, or one token a character).

Design (BPE)::

    normalizer     NFKC (keeping full-width CJK punctuation ，！？：；（）～… as is), whitespace runs → " ", strip
    pre-tokenizer  isolate every CJK character (Han, kana) → isolate punctuation/symbols →
                   Metaspace: a space becomes "▁" glued to the next word ("I am" → "▁I", "▁am")
    model          BPE learned on those pre-tokens, <unk> for characters never seen in training
    decoder        Metaspace: concatenate, "▁" → " ", drop the space before the first token

so ``decode(encode(s)) == normalize(s)`` exactly, for any text whose characters occurred in training (a
character never seen becomes ``<unk>`` and ``decode`` drops it, with the other special tokens). ``tokens(s)``
gives readable pieces ("▁student", "喜", "。") for attention plots. Text must not contain "▁" (U+2581)
itself: it would come back as a space.

Special tokens have fixed ids (``rosetta.special_tokens``): ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3.
``encode`` adds none of them.

The character tokenizer (``Tokenizer.train_chars``) has no normalizer: every character of the training text,
newlines included, is one token, and decoding concatenates them (exact round trip for seen characters).

The byte-level BPE tokenizer (``Tokenizer.train_byte_level``, GPT-2's design, for language models) has no
normalizer either: text is UTF-8 bytes, so newlines and runs of spaces survive, no character is ever unknown,
and ``decode(encode(s)) == s`` for any text. Its pieces show a leading space as "Ġ" (``"Ġthe"``).

The WordPiece tokenizer (``Tokenizer.train_wordpiece``, BERT-Chinese's design, for masked-language models)::

    normalizer     the BPE one (NFKC, full-width CJK punctuation kept, whitespace collapsed), then lower-case
    pre-tokenizer  split on whitespace → isolate every CJK character → isolate punctuation/symbols
    model          WordPiece: a word is its longest known prefix, then "##"-marked continuations
                   ("nexon" → "ne", "##xon"); every CJK character is a word, so it is always one token
    specials       <pad> <s> </s> <unk> <mask> at ids 0–4 (<s> … </s> play BERT's [CLS] … [SEP])

A word is a token without "##" plus the "##" tokens after it (``word_continuations`` marks those), which is
what whole-word masking needs. ``decode`` joins words with spaces except before CJK characters and
punctuation (whitespace between a CJK character and a Latin word is not recoverable; lower-casing is not
undone); exact text comes back through offsets instead.

Character offsets, for mapping tokens back to the text (extractive QA): ``encode_with_offsets(text)`` gives
the ids and, per token, ``(start, end)`` with ``text[start:end]`` the characters it came from — offsets into
the ORIGINAL string (Python code points, end exclusive), through NFKC, lower-casing and collapsed whitespace
(``"Ｎｅｘｏｎ"`` → token "ne" at (0, 2)). For a question + context pair with truncation into windows, use
the Hugging Face tokenizer underneath: ``tokenizer.hf.encode(question, context)`` adds
``<s> q </s> c </s>`` (type ids 0 / 1) and its ``.offsets`` / ``.sequence_ids`` say which characters of which
text each token covers (special tokens get (0, 0) and sequence id None).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as HFTokenizer

from rosetta.special_tokens import BOS, BOS_ID, EOS, EOS_ID, MASK, PAD_ID, SPECIAL_TOKENS, UNK, UNK_ID

FILE_NAME = "tokenizer.json"
SRC_FILE_NAME, TGT_FILE_NAME = "tokenizer.src.json", "tokenizer.tgt.json"

# NFKC would turn these into ASCII (，→ ,  ！→ !  …→ ...), which Chinese references do not use; they are
# swapped for private-use characters around NFKC and put back.
KEEP_FULLWIDTH = "，！？：；（）～…"
_PRIVATE = [chr(0xE000 + i) for i in range(len(KEEP_FULLWIDTH))]
CJK_PATTERN = r"[\p{Han}\p{Hiragana}\p{Katakana}]"
PUNCT_PATTERN = r"[\p{P}\p{S}]"
WORDPIECE_PREFIX = "##"


def _bpe_normalizer() -> normalizers.Normalizer:
    protect = [normalizers.Replace(c, p) for c, p in zip(KEEP_FULLWIDTH, _PRIVATE)]
    restore = [normalizers.Replace(p, c) for c, p in zip(KEEP_FULLWIDTH, _PRIVATE)]
    return normalizers.Sequence([*protect, normalizers.NFKC(), *restore,
                                 normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()])


def _bpe_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CJK_PATTERN), "isolated"),
        pre_tokenizers.Split(Regex(PUNCT_PATTERN), "isolated"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
    ])


def _check_specials(tk: HFTokenizer, where: str) -> None:
    ids = [tk.token_to_id(t) for t in SPECIAL_TOKENS]
    if ids != [PAD_ID, BOS_ID, EOS_ID, UNK_ID]:
        raise ValueError(f"{where}: special tokens {SPECIAL_TOKENS} must have ids 0-3, found {ids}")


class Tokenizer:
    """Text ↔ token ids. Build with ``train``/``train_chars``, or ``load`` a saved ``tokenizer.json``.

    ``pad_id`` / ``bos_id`` / ``eos_id`` are the ids that pad, start and end a sequence, and ``frame_source``
    wraps a source's ids as the encoder reads them (here ids + </s>; ``PretrainedTokenizer``: [CLS] ids [SEP])."""

    pad_id, bos_id, eos_id = PAD_ID, BOS_ID, EOS_ID

    def __init__(self, hf: HFTokenizer):
        _check_specials(hf, "tokenizer")
        self.hf = hf

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
        """Learn a BPE vocabulary of at most ``vocab_size`` tokens (specials and every seen character
        included) from ``texts``; merges need at least ``min_frequency`` occurrences."""
        hf = HFTokenizer(models.BPE(unk_token=UNK))
        hf.normalizer = _bpe_normalizer()
        hf.pre_tokenizer = _bpe_pre_tokenizer()
        hf.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=SPECIAL_TOKENS, show_progress=False)
        hf.train_from_iterator(texts, trainer)
        return cls(hf)

    @classmethod
    def train_chars(cls, texts: Iterable[str]) -> Tokenizer:
        """One token per character of ``texts`` (sorted by code point after the specials); no normalisation."""
        chars = sorted(set(itertools.chain.from_iterable(texts)))
        vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + [c for c in chars if c not in SPECIAL_TOKENS])}
        hf = HFTokenizer(models.WordLevel(vocab, unk_token=UNK))
        hf.add_special_tokens(SPECIAL_TOKENS)
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
        hf.decoder = decoders.Fuse()
        return cls(hf)

    @classmethod
    def train_byte_level(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
        """Learn a byte-level BPE vocabulary (GPT-2's): the 256 byte symbols plus merges, at most ``vocab_size``
        tokens with the specials. Whitespace is kept as text (a language model must learn line breaks)."""
        hf = HFTokenizer(models.BPE(unk_token=UNK))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=SPECIAL_TOKENS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator(texts, trainer)
        return cls(hf)

    @classmethod
    def train_wordpiece(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
        """BERT-Chinese's vocabulary (see the module docstring): every character of ``texts`` (each CJK one a
        token by itself) plus WordPiece continuations for Latin words and numbers, at most ``vocab_size`` tokens
        with the five specials (<mask> is id 4); continuations need ``min_frequency`` occurrences."""
        hf = HFTokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix=WORDPIECE_PREFIX,
                                          max_input_chars_per_word=100))
        hf.normalizer = normalizers.Sequence([_bpe_normalizer(), normalizers.Lowercase()])
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(CJK_PATTERN), "isolated"),
            pre_tokenizers.Split(Regex(PUNCT_PATTERN), "isolated"),
        ])
        no_space = Regex(rf"^ (?={CJK_PATTERN}|{PUNCT_PATTERN})")  # WordPiece puts " " before every word
        hf.decoder = decoders.Sequence([decoders.WordPiece(prefix=WORDPIECE_PREFIX, cleanup=True),
                                        decoders.Replace(no_space, "")])
        hf.post_processor = processors.TemplateProcessing(  # only for hf.encode(q, c); encode() adds none
            single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
            special_tokens=[(BOS, BOS_ID), (EOS, EOS_ID)])
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=SPECIAL_TOKENS + [MASK], show_progress=False,
                                            continuing_subword_prefix=WORDPIECE_PREFIX)
        hf.train_from_iterator(texts, trainer)
        return cls(hf)

    # ------------------------------------------------------------------------------------ using
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def normalize(self, text: str) -> str:
        """The text as the tokenizer sees it (NFKC, collapsed whitespace): what ``decode(encode(text))`` gives."""
        return self.hf.normalizer.normalize_str(text) if self.hf.normalizer else text

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without BOS/EOS."""
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special tokens (pad, BOS, EOS, unk) are skipped, nothing stops early."""
        return self.hf.decode(list(ids), skip_special_tokens=True)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return self.hf.decode_batch([list(ids) for ids in batch], skip_special_tokens=True)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` (as ``encode``) and each token's (start, end) character span in ``text``
        itself, end exclusive: ``text[start:end]`` is what the token was read from (before normalisation)."""
        encoding = self.hf.encode(text, add_special_tokens=False)
        return encoding.ids, [tuple(o) for o in encoding.offsets]

    def word_continuations(self) -> list[bool]:
        """Per vocabulary id: True where the token continues the word before it (WordPiece's "##" pieces).
        Only a WordPiece tokenizer marks words this way; the others are refused."""
        if not isinstance(self.hf.model, models.WordPiece):
            raise ValueError(f"word boundaries need a WordPiece tokenizer (tokenizer.kind = \"wordpiece\"), "
                             f"not {type(self.hf.model).__name__}")
        prefix = self.hf.model.continuing_subword_prefix
        return [self.hf.id_to_token(i).startswith(prefix) for i in range(self.vocab_size)]

    def tokens(self, text: str) -> list[str]:
        """The pieces of ``text`` as strings (e.g. ``['▁I', '▁am', '▁a', '▁student', '.']``)."""
        return self.hf.encode(text, add_special_tokens=False).tokens

    def id_to_token(self, i: int) -> str | None:
        return self.hf.id_to_token(i)

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def to_str(self) -> str:
        """The Hugging Face JSON serialisation (what ``save`` writes)."""
        return self.hf.to_str()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_str() == other.to_str()

    __hash__ = None  # mutable wrapper: equality by content, not hashable

    def __repr__(self) -> str:
        return f"Tokenizer({type(self.hf.model).__name__}, vocab_size={self.vocab_size})"

    # ------------------------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as one Hugging Face ``tokenizer.json`` (a directory gets ``tokenizer.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(path))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a ``tokenizer.json`` (or a directory holding one); a missing or corrupt file is a clear error."""
        hf, path = _read_tokenizer_file(path)
        _check_specials(hf, str(path))
        return cls(hf)

    def frame_source(self, ids: Sequence[int]) -> list[int]:
        """A source's ids as the encoder reads them: ids + </s>."""
        return [*ids, self.eos_id]


def _read_tokenizer_file(path: str | Path) -> tuple[HFTokenizer, Path]:
    """The Hugging Face tokenizer in ``path`` (a tokenizer.json or a directory holding one), and the file."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        return HFTokenizer.from_file(str(path)), path
    except Exception as e:
        raise ValueError(f"{path}: not a valid Hugging Face tokenizer.json ({e})") from e


class PretrainedTokenizer(Tokenizer):
    """A pretrained model's own vocabulary (e.g. all-MiniLM-L6-v2's WordPiece ``tokenizer.json``) behind the
    ``Tokenizer`` interface, with that model's special tokens: [PAD] pads, [CLS] starts and [SEP] ends a
    sequence (ids 0, 101 and 102 in BERT's uncased vocabulary) instead of Rosetta's <pad> <s> </s> at 0–2.
    The file's own padding and truncation are switched off: callers pad and cut."""

    SPECIALS = ("[PAD]", "[CLS]", "[SEP]")

    def __init__(self, hf: HFTokenizer):
        ids = [hf.token_to_id(t) for t in self.SPECIALS]
        if None in ids:
            raise ValueError(f"a pretrained vocabulary needs the special tokens {list(self.SPECIALS)}; "
                             f"found ids {ids}")
        hf.no_padding()
        hf.no_truncation()
        self.hf = hf
        self.pad_id, self.bos_id, self.eos_id = ids

    @classmethod
    def load(cls, path: str | Path) -> PretrainedTokenizer:
        return cls(_read_tokenizer_file(path)[0])

    def frame_source(self, ids: Sequence[int]) -> list[int]:
        """A source's ids as BERT reads them: [CLS] ids [SEP]."""
        return [self.bos_id, *ids, self.eos_id]


def load_tokenizer_file(path: str | Path) -> Tokenizer:
    """A saved tokenizer: a Rosetta ``Tokenizer`` (<pad> <s> </s> <unk> at ids 0–3), or a
    ``PretrainedTokenizer`` for a vocabulary with BERT's [PAD] / [CLS] / [SEP] instead."""
    hf, path = _read_tokenizer_file(path)
    if hf.token_to_id(SPECIAL_TOKENS[0]) is None and hf.token_to_id(PretrainedTokenizer.SPECIALS[1]) is not None:
        return PretrainedTokenizer(hf)
    _check_specials(hf, str(path))
    return Tokenizer(hf)


def train_tokenizers(src_texts: Sequence[str], tgt_texts: Sequence[str], vocab_size: int, joint: bool = True,
                     min_frequency: int = 2) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers: one shared vocabulary learned on both sides (``joint``, the same object
    twice; needed to share embeddings) or one vocabulary of ``vocab_size`` per side."""
    if joint:
        tok = Tokenizer.train(itertools.chain(src_texts, tgt_texts), vocab_size, min_frequency)
        return tok, tok
    return (Tokenizer.train(src_texts, vocab_size, min_frequency),
            Tokenizer.train(tgt_texts, vocab_size, min_frequency))


def save_tokenizers(directory: str | Path, src: Tokenizer, tgt: Tokenizer) -> None:
    """Write ``tokenizer.json`` if source and target share one tokenizer, else ``tokenizer.src.json`` and
    ``tokenizer.tgt.json`` (files of the other layout are removed so ``load_tokenizers`` is unambiguous)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    joint = src is tgt or src == tgt
    keep = [FILE_NAME] if joint else [SRC_FILE_NAME, TGT_FILE_NAME]
    for name in (FILE_NAME, SRC_FILE_NAME, TGT_FILE_NAME):
        if name not in keep:
            (directory / name).unlink(missing_ok=True)
    if joint:
        src.save(directory / FILE_NAME)
    else:
        src.save(directory / SRC_FILE_NAME)
        tgt.save(directory / TGT_FILE_NAME)


def load_tokenizers(directory: str | Path) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers saved by ``save_tokenizers`` (a joint one comes back as one object twice)."""
    directory = Path(directory)
    if (directory / FILE_NAME).is_file():
        tok = load_tokenizer_file(directory / FILE_NAME)
        return tok, tok
    if (directory / SRC_FILE_NAME).is_file() and (directory / TGT_FILE_NAME).is_file():
        return load_tokenizer_file(directory / SRC_FILE_NAME), load_tokenizer_file(directory / TGT_FILE_NAME)
    raise FileNotFoundError(f"no tokenizer in {directory}: expected {FILE_NAME}, or {SRC_FILE_NAME} and "
                            f"{TGT_FILE_NAME}")


def encode_texts(tokenizer, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Encoder input ids of each text, unpadded: [CLS] … [SEP] for a Hugging Face tokenizer (its own
    post-processor and truncation), <s> … </s> for a Rosetta tokenizer; at most ``max_length`` ids."""
    if isinstance(tokenizer, Tokenizer):
        body = max_length - 2 if max_length else None
        bos, eos = tokenizer.bos_id, tokenizer.eos_id
        return [[bos, *ids[:body], eos] for ids in tokenizer.encode_batch(list(texts))]
    out = []
    for encoding in tokenizer.encode_batch(list(texts)):
        ids = encoding.ids[: sum(encoding.attention_mask)]  # drop the padding the tokenizer may add
        out.append(ids[:max_length] if max_length else ids)
    return out
