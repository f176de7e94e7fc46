"""From a trained model to outputs; never imports ``rosetta.train``.

    defaults     decoding defaults (beam, length penalty, output limits) — the one place they live
    search       greedy search, output limits, the length penalty
    beam         beam search (n-best)
    sampling     logits processors (top-k, top-p, temperature) and the language model's ``generate``
    translator   ``Translator`` and ``load(DIR)``: text in, translations out
    text_classifier  ``TextClassifier``: texts in, labels with probabilities and attention out
    loading      ``load_any(DIR)``: a model of any family with its tokenizer(s)
    engines      exported models (``rosetta export``) on ONNX Runtime and CTranslate2, behind ``Translator``
    qa           ``QuestionAnswerer``: a question and a context in, the answer's characters, score and span out
"""

from rosetta.decode.beam import beam_search, beam_search_nbest
from rosetta.decode.defaults import DEFAULTS, DecodeOptions
from rosetta.decode.qa import Answer, QuestionAnswerer
from rosetta.decode.sampling import apply_min_length, generate, sample_next, top_k_filter, top_p_filter
from rosetta.decode.search import Hypothesis, gnmt_penalty, greedy_search, output_limits
from rosetta.decode.text_classifier import TextClassifier, TextPrediction
from rosetta.decode.translator import Translator, load, quantize_int8

__all__ = [
    "DEFAULTS", "DecodeOptions", "Hypothesis", "TextClassifier", "TextPrediction", "Translator", "apply_min_length",
    "beam_search", "beam_search_nbest", "Answer", "QuestionAnswerer",
    "generate", "gnmt_penalty", "greedy_search", "load", "output_limits", "quantize_int8", "sample_next",
    "top_k_filter", "top_p_filter",
]
