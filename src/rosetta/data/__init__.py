"""Data: corpus registry and loading, clean-up, subword tokenizers, token-budgeted batches.

    registry   the known corpora: files, public URLs, sha256s, reader layouts (register_corpus / get_corpus)
    download   finding a corpus on disk (data_dir, $ROSETTA_DATA, ~/.cache), else a verified download
    corpora    reading corpora: text, aligned pairs, per-corpus readers, train/valid/test splits
    clean      named clean-up steps (whitespace, NFKC, Traditional → Simplified Chinese, …)
    tokenizer  BPE / character tokenizers with fixed special ids (pad 0, <s> 1, </s> 2, <unk> 3)
    batching   length-bucketed batches under a token budget, collate functions, a resumable DDP-aware stream
    images     image corpora (MNIST, scikit-learn's digits) as arrays; pictures → normalised tensors, shifts
"""

from rosetta.data.batching import (
    BatchStream,
    ClassificationBatch,
    LMBatch,
    TranslationBatch,
    chunk_tokens,
    collate_classification,
    collate_lm,
    collate_translation,
    make_batches,
    shard,
)
from rosetta.data.clean import STEPS, apply_cleaning, clean_pair, clean_pairs, clean_text
from rosetta.data.corpora import (
    corpus_stats,
    describe,
    load_classification,
    load_parallel,
    load_parallel_files,
    load_text,
    split_by_key,
)
from rosetta.data.download import ChecksumError, locate, resolve_data_dir
from rosetta.data.images import holdout, load_images, to_tensor
from rosetta.data.registry import CorpusFile, CorpusInfo, get_corpus, list_corpora, register_corpus
from rosetta.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Tokenizer,
    load_tokenizers,
    save_tokenizers,
    train_tokenizers,
)

__all__ = [
    "BOS_ID", "EOS_ID", "PAD_ID", "UNK_ID", "STEPS",
    "BatchStream", "ChecksumError", "ClassificationBatch", "CorpusFile", "CorpusInfo", "LMBatch", "Tokenizer",
    "TranslationBatch", "apply_cleaning", "chunk_tokens", "clean_pair", "clean_pairs", "clean_text",
    "collate_classification", "collate_lm", "collate_translation", "corpus_stats", "describe", "get_corpus",
    "holdout", "list_corpora", "load_classification", "load_images", "load_parallel", "load_parallel_files",
    "load_text", "load_tokenizers", "locate", "make_batches", "register_corpus", "resolve_data_dir",
    "save_tokenizers", "shard", "split_by_key", "to_tensor", "train_tokenizers",
]
