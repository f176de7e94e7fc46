"""A load test over loopback: real uvicorn servers for a text classifier, a summariser and a language model,
a few hundred concurrent mixed requests (/v1/classify, /v1/embed, /v1/attention, /v1/summarise,
/v1/generate), every answer equal to the answer the same request gets when sent alone.

"Equal": labels, summaries and generated text exactly; probabilities, embeddings and attention weights to
1e-5 (a merged batch pads and multiplies the same numbers in a different order, so the last float bits may
differ). The batcher's statistics show that requests really were merged.
"""

import asyncio
import random

import httpx
import pytest
from tiny_models import REVIEWS, tiny_classifier_dir, tiny_lm_dir, tiny_summariser_dir
from tiny_translator import SENTENCES, serve_in_thread

from rosetta.decode.loading import load_any
from rosetta.server import Settings, create_app

TEXTS = [t for t, _ in REVIEWS[::2]] + ["", "a film", "I loved the train and hated Paris"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def bodies(rng: random.Random) -> dict[str, list[tuple[str, str, dict]]]:
    """The distinct requests of each kind (few, so that sending each alone first is quick)."""
    def some(pool, k):
        return [rng.sample(pool, rng.choice([1, 1, 2, 3][:k + 1])) for _ in range(k)]

    return {
        "classify": [("classifier", "/v1/classify", {"texts": t}) for t in some(TEXTS, 8)],
        "embed": [("classifier", "/v1/embed", {"texts": t, "normalize": i % 3 > 0})
                  for i, t in enumerate(some(TEXTS, 6))],
        "cattention": [("classifier", "/v1/attention", {"text": t}) for t in TEXTS[:4]],
        "summarise": [("summariser", "/v1/summarise", {"texts": t, **({"beam": 2} if i == 0 else {})})
                      for i, t in enumerate(some(SENTENCES, 6))],
        "sattention": [("summariser", "/v1/attention", {"text": t, "kinds": ["cross"]}) for t in SENTENCES[:3]],
        "generate": [("lm", "/v1/generate", {"prompt": p, "max_new_tokens": 12, "seed": i, "stream": i % 2 == 0})
                     for i, p in enumerate(["the ", "a cat", "", "the dog"])],
    }


def requests_for(rng: random.Random) -> list[tuple[str, str, dict]]:
    """(server, path, body): 300 requests, mixed."""
    pools = bodies(rng)
    kinds = rng.choices(list(pools), [40, 25, 8, 35, 8, 4], k=300)
    return [rng.choice(pools[kind]) for kind in kinds]


def close(got, expected, path):
    """Compare two answers: exact, except floats to 1e-5."""
    if isinstance(expected, float):
        return got == pytest.approx(expected, abs=1e-5)
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(close(got[k], expected[k], path) for k in expected)
    if isinstance(expected, list):
        return len(got) == len(expected) and all(close(g, e, path) for g, e in zip(got, expected))
    return got == expected


def answer(response):
    """JSON, or the NDJSON lines of a streamed generation."""
    if response.headers["content-type"].startswith("application/x-ndjson"):
        return [httpx.Response(200, content=line).json() for line in response.text.splitlines()]
    return response.json()


def test_300_concurrent_mixed_requests_equal_their_single_answers():
    import rosetta

    apps = {"classifier": create_app(load_any(tiny_classifier_dir()), Settings()),
            "summariser": create_app(rosetta.load(tiny_summariser_dir()), Settings()),
            "lm": create_app(load_any(tiny_lm_dir()), Settings())}
    requests = requests_for(random.Random(0))
    try:
        with serve_in_thread(apps["classifier"]) as c, serve_in_thread(apps["summariser"]) as s, \
                serve_in_thread(apps["lm"]) as g:
            urls = {"classifier": c, "summariser": s, "lm": g}

            async def main():
                limits = httpx.Limits(max_connections=400)
                async with httpx.AsyncClient(timeout=120, limits=limits) as client:
                    singles = {}
                    for server, path, body in requests:  # each distinct request alone, one after the other
                        key = (server, path, repr(body))
                        if key not in singles:
                            singles[key] = answer(await client.post(urls[server] + path, json=body))
                    responses = await asyncio.gather(*[client.post(urls[server] + path, json=body)
                                                       for server, path, body in requests])
                    health = {k: (await client.get(url + "/v1/health")).json() for k, url in urls.items()}
                    return singles, responses, health

            singles, responses, health = asyncio.run(asyncio.wait_for(main(), 180))
    finally:
        for app in apps.values():
            app.state.batcher.close()
    assert [r.status_code for r in responses] == [200] * len(requests)
    for (server, path, body), response in zip(requests, responses):
        expected = singles[(server, path, repr(body))]
        assert close(answer(response), expected, path), (server, path, body)
    # the answers are not all alike: the check above could fail
    assert len({r.json()["predictions"][0]["label"] for (_, p, _), r in zip(requests, responses)
                if p == "/v1/classify"}) == 3
    for server in ("classifier", "summariser"):
        assert health[server]["errors"] == 0 and health[server]["merged_calls"] > 0
    assert health["classifier"]["largest_batch_requests"] > 1
