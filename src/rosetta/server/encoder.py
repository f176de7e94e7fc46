"""The HTTP API for an encoder (BERT-style, family "encoder"): ``create_encoder_app(model, settings)``.
``create_app`` (app.py) calls it when it is given an encoder ``LoadedModel`` or a ``TextClassifier``.

    POST /v1/embed      any encoder: {"texts": [...], "normalize"?: true} → {"embeddings": [[...], ...], "dim"}
    POST /v1/classify   a text classifier: {"texts": [...]} → {"predictions": [{"label", "probability",
                        "probabilities": {label: p}}, ...]}
    POST /v1/attention  a text classifier: {"text"} → tokens, the prediction, "encoder": per layer (H, T, T);
                        a question-answering model: {"question", "context"} → its tokens and maps (qa.py)
    POST /v1/answer     a question-answering model: {"question", "context"} → {"answer", "score", "start", "end"}
    GET  /v1/model      {"family": "encoder", "task", "labels"?, "endpoints", limits, …}

/v1/embed and /v1/classify go through the Batcher like /v1/translate: concurrent requests are merged into one
model call (requests merge when they call the same function with the same options), answers split back.
An image model also answers /v1/classify (vision.py): a picture in, the same "label" and "probability" out.
"""

from dataclasses import asdict
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from rosetta.checkpoint import model_task
from rosetta.decode.loading import LoadedModel, sentence_embeddings
from rosetta.decode.text_classifier import TextClassifier
from rosetta.server.batcher import Batcher
from rosetta.server.common import head_importance, model_app, rounded, text_field

FORBID = ConfigDict(extra="forbid")


class EmbedResponse(BaseModel):
    embeddings: list[list[float]] = Field(description="one vector per text, in order")
    dim: int


class TextPrediction(BaseModel):
    label: str
    probability: float
    probabilities: dict[str, float] = Field(description="every label's probability")


class ClassifyResponse(BaseModel):
    predictions: list[TextPrediction] = Field(description="one per text, in order")


class ClassifierAttentionResponse(TextPrediction):
    tokens: list[str]
    encoder: list[list[list[list[float]]]] = Field(description="per layer (H, T, T); row 0: what [CLS] attends to")


def texts_request(name: str, settings, **more: Any) -> type[BaseModel]:
    """A request body {"texts": [1 … max_texts strings of ≤ max_chars]} plus the fields in ``more``."""
    texts = (list[text_field(settings.max_chars)],
             Field(min_length=1, max_length=settings.max_texts,
                   description=f"1 to {settings.max_texts} texts of at most {settings.max_chars} characters"))
    return create_model(name, __config__=FORBID, texts=texts, **more)


def encoder_info(loaded: LoadedModel, task: str, settings) -> dict[str, Any]:
    keep = ("max_texts", "max_chars", "max_attention_chars", "max_document_chars", "batching", "max_batch",
            "timeout_s")
    return {
        "family": "encoder", "task": task, "config": loaded.model.config.to_dict(),
        "parameters": loaded.model.num_parameters(), "labels": loaded.info.get("labels"),
        "max_length": loaded.info.get("max_length"), "pretrained": loaded.info.get("pretrained"),
        "corpus": loaded.info.get("corpus"),
        "limits": {k: v for k, v in asdict(settings).items() if k in keep},
        **head_importance(loaded.info),
    }


def create_encoder_app(model, settings) -> FastAPI:
    """A FastAPI app serving an encoder: ``model`` is a ``LoadedModel`` of family "encoder" (a classifier, a
    masked-language model, a question answerer, a sentence encoder such as all-MiniLM-L6-v2) or a
    ``TextClassifier``; ``settings`` the server's ``Settings``."""
    classifier = model if isinstance(model, TextClassifier) else None
    loaded: LoadedModel = classifier.loaded if classifier else model
    task = model_task({**loaded.info, "family": "encoder"})
    if task == "classification" and classifier is None:
        classifier = TextClassifier(loaded)

    def embed(texts: list[str], normalize: bool = True) -> list[list[float]]:
        return sentence_embeddings(loaded, texts, normalize=normalize).tolist()

    functions: dict[str, Any] = {"embed": embed}
    if classifier is not None:
        functions["classify"] = lambda texts: [p.to_dict() for p in classifier.classify(texts)]
    batcher = Batcher(None, batching=settings.batching, max_batch=settings.max_batch,
                      max_wait_ms=settings.max_wait_ms, functions=functions)
    title = {"classification": "text classification", "qa": "question answering"}.get(task, "sentence encoder")
    app, run = model_app(f"Rosetta {title} server", "Embed, classify or answer with a Rosetta encoder and look "
                         "at its attention.", batcher, settings, encoder_info(loaded, task, settings))
    app.state.loaded, app.state.classifier = loaded, classifier

    EmbedRequest = texts_request("EmbedRequest", settings, normalize=(
        bool, Field(True, strict=True, description="unit-length vectors (dot product = cosine similarity)")))

    @app.post("/v1/embed", response_model=EmbedResponse,
              summary="Sentence embeddings: the mean of the encoder's output over each text's tokens")
    async def embed_texts(body: EmbedRequest) -> JSONResponse:
        vectors = await run(batcher.submit_batch("embed", body.texts, normalize=body.normalize))
        return JSONResponse({"embeddings": vectors, "dim": loaded.model.config.d_model})

    if classifier is not None:
        add_classify_routes(app, run, batcher, classifier, settings)
    if task == "qa":
        from rosetta.server.qa import add_answer_routes

        add_answer_routes(app, run, batcher, loaded, settings)
    return app


def add_classify_routes(app: FastAPI, run, batcher: Batcher, classifier: TextClassifier, settings) -> None:
    """/v1/classify (merged like translations) and /v1/attention for a text classifier."""
    ClassifyRequest = texts_request("ClassifyRequest", settings)
    AttentionRequest = create_model(
        "ClassifierAttentionRequest", __config__=FORBID,
        text=(text_field(settings.max_attention_chars, blank=False), Field(description="one text")))

    @app.post("/v1/classify", response_model=ClassifyResponse, summary="Classify texts (kept in order)")
    async def classify(body: ClassifyRequest) -> JSONResponse:
        return JSONResponse({"predictions": await run(batcher.submit_batch("classify", body.texts))})

    @app.post("/v1/attention", summary="Classify one text and return its self-attention (layer × head × T × T); "
                                       "row 0 is what [CLS] attends to", response_model=ClassifierAttentionResponse)
    async def attention(body: AttentionRequest) -> JSONResponse:
        def work() -> dict[str, Any]:
            result = classifier.attention(body.text)
            return {**result, "encoder": rounded(result["encoder"])}

        return JSONResponse(await run(batcher.submit_call(work)))
