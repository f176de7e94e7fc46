"""SentencePiece models with an outside vocabulary (Marian / opus-mt) behind Rosetta's tokenizer interface.

A Marian directory splits text with SentencePiece but numbers the pieces with its own ``vocab.json``:

    text ─ split off special tokens (</s>, <unk>, <pad> written in the text) ─ drop a leading ">>xx<<" language
         code (looked up as one token) ─ spm.encode(chunk) → pieces ─ vocab.json[piece], <unk> if absent
    ids  ─ drop special ids (</s>, <unk>, <pad>) ─ pieces ─ spm.decode_pieces ─ "▁" → " " ─ strip

``source.spm`` splits source text and ``target.spm`` target text; both sides number pieces with one
``vocab.json`` (or, with ``separate_vocabs``, the target side with ``target_vocab.json``). ``encode`` adds no
</s>; ``frame_source`` appends it, as the encoder reads a source. This is what ``transformers``'
``MarianTokenizer`` does (tests/test_hf_marian.py checks ids and text against it), without its optional
Moses punctuation normaliser, which it skips too when ``sacremoses`` is not installed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

SPIECE_UNDERLINE = "▁"
LANGUAGE_CODE = re.compile(r">>.*?<<")  # ">>deu<<" before the text picks a multilingual model's target


class SentencePieceVocabTokenizer:
    """One side (source or target) of a Marian tokenizer: a SentencePiece model + a piece → id vocabulary.

    ``pad_id`` / ``eos_id`` / ``unk_id`` are the vocabulary's <pad> / </s> / <unk>; ``bos_id`` is the pad id,
    as Marian starts the decoder with <pad>."""

    def __init__(self, spm_model, vocab: dict[str, int], eos: str = "</s>", unk: str = "<unk>", pad: str = "<pad>"):
        missing = [t for t in (eos, unk, pad) if t not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {missing}")
        self.spm, self.vocab = spm_model, vocab
        self.pieces = {i: p for p, i in vocab.items()}  # id → piece
        self.eos_id, self.unk_id, self.pad_id = vocab[eos], vocab[unk], vocab[pad]
        self.bos_id = self.pad_id
        self.specials = (eos, unk, pad)
        self._split = re.compile("(" + "|".join(re.escape(t) for t in self.specials) + ")")

    @classmethod
    def from_files(cls, spm_file: str | Path, vocab_file: str | Path) -> SentencePieceVocabTokenizer:
        """A SentencePiece model file and a vocab.json; a missing or unreadable file is a one-line error."""
        import sentencepiece

        for file in (spm_file, vocab_file):
            if not Path(file).is_file():
                raise FileNotFoundError(f"{file} not found: a Marian directory holds source.spm, target.spm "
                                        "and vocab.json")
        try:
            vocab = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{vocab_file} is not valid JSON ({e}); copy it again") from e
        try:
            spm_model = sentencepiece.SentencePieceProcessor(model_file=str(spm_file))
        except (RuntimeError, OSError) as e:
            raise ValueError(f"{spm_file} is not a SentencePiece model ({str(e).splitlines()[0]}); copy it again"
                             ) from e
        return cls(spm_model, vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def normalize(self, text: str) -> str:
        return text

    # ------------------------------------------------------------------ text → ids
    def tokens(self, text: str) -> list[str]:
        """The pieces of ``text`` (special tokens written in it kept whole, a leading ">>xx<<" as one piece)."""
        pieces: list[str] = []
        for chunk in self._split.split(text):
            if not chunk:
                continue
            if chunk in self.specials:
                pieces.append(chunk)
                continue
            code = LANGUAGE_CODE.match(chunk)
            if code:
                pieces.append(code.group())
                chunk = chunk[code.end():]
            pieces.extend(self.spm.encode(chunk, out_type=str))
        return pieces

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without </s>; a piece missing from the vocabulary is <unk>."""
        return [self.vocab.get(p, self.unk_id) for p in self.tokens(text)]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def frame_source(self, ids: Sequence[int]) -> list[int]:
        """A source's ids as the encoder reads them: ids + </s>."""
        return [*ids, self.eos_id]

    # ------------------------------------------------------------------ ids → text
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special tokens (</s>, <unk>, <pad>) are skipped."""
        special = {self.eos_id, self.unk_id, self.pad_id}
        pieces = [self.pieces.get(int(i), "") for i in ids if int(i) not in special]
        return self.spm.decode_pieces([p for p in pieces if p]).replace(SPIECE_UNDERLINE, " ").strip()

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def id_to_token(self, i: int) -> str | None:
        return self.pieces.get(int(i))

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def __repr__(self) -> str:
        return f"SentencePieceVocabTokenizer(vocab_size={self.vocab_size})"


def marian_tokenizers(directory: str | Path, separate_vocabs: bool = False
                      ) -> tuple[SentencePieceVocabTokenizer, SentencePieceVocabTokenizer]:
    """(source, target) tokenizers of a Marian directory: source.spm and target.spm, numbered by vocab.json
    (the target side by target_vocab.json with ``separate_vocabs``)."""
    path = Path(directory)
    target_vocab = path / ("target_vocab.json" if separate_vocabs else "vocab.json")
    return (SentencePieceVocabTokenizer.from_files(path / "source.spm", path / "vocab.json"),
            SentencePieceVocabTokenizer.from_files(path / "target.spm", target_vocab))
