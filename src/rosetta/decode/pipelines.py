"""``rosetta.load(PATH)``: the pipeline that runs whatever model PATH holds, from any source.

PATH is a Rosetta run, model or checkpoint folder, a Hugging Face directory (any family of ``rosetta.hub``), or a
folder exported to ONNX / CTranslate2. Its family and task (config.json, ``rosetta.checkpoint.task``) pick the
pipeline from one table, ``PIPELINES``:

    task                                     pipeline            what it does
    translation, summarisation (+ T5, BART)  Translator          .translate(texts) → texts
    lm                                       Generator           .generate(prompt) → text, .stream(prompt)
    classification                           TextClassifier      .predict(texts) → labels and probabilities
    qa                                       QuestionAnswerer    .answer(questions, contexts) → spans
    mlm                                      FillMasker          .fill(text with <mask>) → tokens and probabilities
    embedding                                Embedder            .embed(texts) → vectors (N, D)
    image-classification                     ImageClassifier     .predict(images) → labels and probabilities

    >>> rosetta.load("runs/sst2-minilm").predict(["a gripping film"])[0].label
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from rosetta import checkpoint as ckpt
from rosetta.decode.loading import LoadedModel, load_any, sentence_embeddings
from rosetta.decode.precision import for_inference
from rosetta.models.pretrained import MINILM_NAMES, is_huggingface_dir


class Generator:
    """A language model (family "lm") with its tokenizer: a prompt in, its continuation out."""

    def __init__(self, loaded: LoadedModel):
        if loaded.family != "lm":
            raise ValueError(f"a generator needs a language model, not a {loaded.family!r} model")
        self.loaded, self.tokenizer = loaded, loaded.tokenizer
        self.model = for_inference(loaded.model, "fp32")  # on a CPU: the decoding step's layers packed

    def stream(self, prompt: str, max_new_tokens: int = 100, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None) -> Iterator[str]:
        """The continuation's text piece by piece (``rosetta.decode.sampling.stream_text``); temperature 0 is
        greedy."""
        from rosetta.decode.sampling import stream_text

        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        for _, piece in stream_text(self.model, self.tokenizer, prompt, max_new_tokens, temperature, top_k, top_p,
                                    generator=generator):
            yield piece

    def generate(self, prompt: str, max_new_tokens: int = 100, **sampling: Any) -> str:
        """The continuation of ``prompt`` (without the prompt); ``sampling`` as ``stream``'s."""
        return "".join(self.stream(prompt, max_new_tokens, **sampling))


class FillMasker:
    """An encoder with an MLM head: each <mask> of a text filled with its most likely tokens."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded

    def fill(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        from rosetta.decode.fill_mask import fill_mask

        return fill_mask(self.loaded, text, top_k)


class Embedder:
    """Sentence vectors: the mean of an encoder's output over real tokens (``sentence_embeddings``)."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded

    def embed(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        return sentence_embeddings(self.loaded, list(texts), normalize=normalize)


def _text_classifier(loaded: LoadedModel):
    from rosetta.decode.text_classifier import TextClassifier

    return TextClassifier(loaded)


def _answerer(loaded: LoadedModel):
    from rosetta.decode.qa import QuestionAnswerer

    return QuestionAnswerer(loaded)


def _image_classifier(loaded: LoadedModel):
    from rosetta.decode.vision import ImageClassifier

    return ImageClassifier(loaded)


# The model's task → the pipeline made from its ``LoadedModel`` (translation families load as a Translator).
PIPELINES: dict[str, Callable[[LoadedModel], Any]] = {
    "lm": Generator, "classification": _text_classifier, "qa": _answerer, "mlm": FillMasker,
    "embedding": Embedder, "image-classification": _image_classifier,
}


def model_family_of(path: str | Path) -> str:
    """The family of the model in ``path``, read from its config.json alone (Hugging Face: its model_type's); the
    files are checked against the manifest once, by the loader it picks."""
    if str(path).lower() in MINILM_NAMES:
        return "encoder"
    if is_huggingface_dir(path):
        from rosetta.hub.reader import read_hf_config  # importing rosetta.hub registers every family
        from rosetta.hub.registry import hf_family
        from rosetta.models.pretrained import PretrainedError

        try:
            return hf_family(read_hf_config(Path(path)).get("model_type")).family
        except PretrainedError as e:
            raise ckpt.CheckpointError(str(e)) from None
    ckpt.refuse_pickle(path)
    return ckpt.model_family(ckpt.read_config(ckpt.resolve_model_dir(path)))  # the loader then checks the files


def load(path: str | Path, device: str | torch.device = "cpu", **options: Any):
    """The pipeline for the model in ``path`` (module docstring). ``options`` go to the translator loader
    (``rosetta.decode.translator.load``: int8, threads, precision, sentences, beam) for translation families."""
    if model_family_of(path) == "translation":
        from rosetta.decode.translator import load as load_translator

        return load_translator(path, device, **options)
    if options:
        raise ValueError(f"{', '.join(sorted(options))}: options of translation models; {path} holds another kind")
    loaded = load_any(path, device)
    return PIPELINES[ckpt.model_task({**loaded.info, "family": loaded.family})](loaded)
