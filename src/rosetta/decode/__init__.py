"""From a trained model to outputs; never imports ``rosetta.train``.

    defaults     decoding defaults (beam, length penalty, output limits) — the one place they live
    search       greedy search, output limits, the length penalty
    beam         beam search (n-best)
    sampling     logits processors (top-k, top-p, temperature) and the language model's ``generate``
    translator   ``Translator`` and ``load(DIR)``: text in, translations out
    text_classifier  ``TextClassifier``: texts in, labels with probabilities and attention out
    loading      ``load_any(DIR)``: a model of any family with its tokenizer(s)
    engines      exported models (``rosetta export``) on ONNX Runtime and CTranslate2, behind ``Translator``
    allocator    ``keep_freed_memory``: glibc keeps freed blocks for the next decoding step
    precision    ``for_inference``: a model to decode in fp32, bf16 weights or int8
    qa           ``QuestionAnswerer``: a question and a context in, the answer's characters, score and span out
"""

from rosetta.decode.beam import beam_search, beam_search_nbest
from rosetta.decode.defaults import DEFAULTS, DecodeOptions
from rosetta.decode.precision import INFERENCE_PRECISIONS, for_inference, quantize_int8, resolve_inference_precision
from rosetta.decode.qa import Answer, QuestionAnswerer
from rosetta.decode.sampling import apply_min_length, generate, sample_next, top_k_filter, top_p_filter
from rosetta.decode.search import Hypothesis, gnmt_penalty, greedy_search, output_limits
from rosetta.decode.text_classifier import TextClassifier, TextPrediction
from rosetta.decode.translator import Translator, load

__all__ = [
    "Answer", "DEFAULTS", "DecodeOptions", "Hypothesis", "INFERENCE_PRECISIONS", "QuestionAnswerer", "TextClassifier",
    "TextPrediction", "Translator", "apply_min_length", "beam_search", "beam_search_nbest", "for_inference",
    "generate", "gnmt_penalty", "greedy_search", "load", "output_limits", "quantize_int8",
    "resolve_inference_precision", "sample_next", "top_k_filter", "top_p_filter",
]
