"""The question-answering endpoints of an encoder app (encoder.py adds them for a model with task "qa"):

    POST /v1/answer     {"question": "...", "context": "...", "max_answer_len"?: 30}
                        → {"answer": "...", "score": 0.93, "start": 18, "end": 30}   (context[start:end] == answer)
    POST /v1/attention  {"question": "...", "context": "...", "window"?: 0}
                        → {"tokens", "question": [first, last), "context": [first, last), "windows",
                           "question_to_context": per layer (H, Q, C)}

/v1/answer goes through the Batcher: concurrent questions are answered in one model call
(``rosetta.decode.qa.QuestionAnswerer``: every window of every context, the best span over a question's windows).
/v1/attention returns only the rows of the question's tokens and the columns of the context's (of one window:
a long context is cut into several, ``windows`` says how many), so the answer stays small; row q of layer l,
head h is how much question token q attends to each context token (the rest of its row goes to [CLS], the
question itself and [SEP], so a row sums to at most 1).
"""

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from rosetta.decode.loading import LoadedModel
from rosetta.decode.qa import QuestionAnswerer
from rosetta.server.batcher import Batcher
from rosetta.server.common import rounded, text_field

MAX_ANSWER_TOKENS = 100


class AnswerResponse(BaseModel):
    answer: str
    score: float
    start: int = Field(description="first character of the answer in the context")
    end: int = Field(description="one past its last character")


class AnswerAttentionResponse(BaseModel):
    tokens: list[str] = Field(description="the window's tokens")
    question: list[int] = Field(min_length=2, max_length=2, description="[first, last) of the question's tokens")
    context: list[int] = Field(min_length=2, max_length=2,
                               description="[first, last) of the context's tokens in this window")
    windows: int = Field(description="how many windows the context is cut into")
    question_to_context: list[list[list[list[float]]]] = Field(description="per layer (H, Q, C)")


def qa_requests(settings) -> tuple[type[BaseModel], type[BaseModel]]:
    forbid = ConfigDict(extra="forbid")
    pair = dict(question=(text_field(settings.max_chars, blank=False), Field(description="the question")),
                context=(text_field(settings.max_document_chars, blank=False),
                         Field(description="the text holding the answer")))
    answer = create_model("AnswerRequest", __config__=forbid, **pair, max_answer_len=(
        int, Field(30, strict=True, ge=1, le=MAX_ANSWER_TOKENS, description="most tokens in an answer")))
    attention = create_model("AnswerAttentionRequest", __config__=forbid, **pair, window=(
        int, Field(0, strict=True, ge=0, description="which window of a long context")))
    return answer, attention


def question_to_context(result: dict[str, Any]) -> list:
    """The question rows and context columns of each layer's maps: per layer (H, Q, C) nested lists."""
    (q0, q1), (c0, c1) = result["question"], result["context"]
    return [rounded(layer[:, q0:q1, c0:c1].tolist()) for layer in result["attention"]]


def add_answer_routes(app: FastAPI, run, batcher: Batcher, loaded: LoadedModel, settings) -> None:
    """/v1/answer (merged) and /v1/attention for a question-answering model."""
    answerer = QuestionAnswerer(loaded)
    app.state.answerer = answerer

    def answer(pairs: list[tuple[str, str]], max_answer_len: int = 30) -> list[dict[str, Any]]:
        answers = answerer.answer([q for q, _ in pairs], [c for _, c in pairs], max_answer_len=max_answer_len)
        return [a.to_dict() for a in answers]

    batcher.functions["answer"] = answer
    AnswerRequest, AttentionRequest = qa_requests(settings)

    @app.post("/v1/answer", response_model=AnswerResponse,
              summary="Answer a question from a context: the span of the context, its score and character offsets")
    async def answer_question(body: AnswerRequest) -> JSONResponse:
        found = await run(batcher.submit_batch("answer", [(body.question, body.context)],
                                               max_answer_len=body.max_answer_len))
        return JSONResponse(found[0])

    @app.post("/v1/attention", summary="The question → context attention of every layer and head (one window)",
              response_model=AnswerAttentionResponse)
    async def attention(body: AttentionRequest) -> JSONResponse:
        def work() -> dict[str, Any]:
            windows = len(answerer.windows([body.question], [body.context]))
            if body.window >= windows:  # the client's mistake: answered 422 below
                return {"error": f"window: this context has {windows} window(s), numbered from 0; "
                                 f"there is no window {body.window}"}
            result = answerer.attention(body.question, body.context, body.window)
            return {"tokens": result["tokens"], "question": list(result["question"]),
                    "context": list(result["context"]), "windows": result["windows"],
                    "question_to_context": question_to_context(result)}

        result = await run(batcher.submit_call(work))
        return JSONResponse(result, status_code=422 if "error" in result else 200)
