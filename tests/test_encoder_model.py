"""Encoder-only model (BERT layout): a classification head learns a tiny task, padding does not change
pooled embeddings, masks and token types behave, and errors are clear."""

import pytest
import torch

from rosetta.models.encoder import EncoderModel, bert_config, mean_pool

V, PAD = 12, 0


def make_model(seed=0, num_labels=0, **overrides):
    torch.manual_seed(seed)
    config = bert_config(V, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, max_len=16, dropout=0.0,
                         attention_dropout=0.0, pad_id=PAD, bos_id=1, eos_id=2, **overrides)
    return EncoderModel(config, num_labels=num_labels)


def contains_seven_task(n=64, length=8, seed=0):
    """Random sequences of tokens 3…11 with random right padding; label = whether token 7 occurs."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, V, (n, length), generator=gen)
    ids[ids == 7] = 8
    labels = torch.arange(n) % 2
    for i in range(n):
        real = int(torch.randint(3, length + 1, (1,), generator=gen))
        if labels[i]:
            ids[i, int(torch.randint(0, real, (1,), generator=gen))] = 7
        ids[i, real:] = PAD
    return ids, labels


def test_classifier_reaches_full_train_accuracy():
    model = make_model(num_labels=2)
    ids, labels = contains_seven_task()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model.classify(ids), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if model.classify(ids).argmax(-1).eq(labels).all():
            break
    model.eval()
    with torch.no_grad():
        accuracy = model.classify(ids).argmax(-1).eq(labels).float().mean().item()
    assert accuracy == 1.0, f"train accuracy {accuracy:.2f}, loss {loss.item():.3f}"


def test_padding_does_not_change_pooled_embeddings():
    model = make_model().eval()
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [3, 4, 0, 0, 0, 0], [9, 10, 11, 3, 4, 5]])
    with torch.no_grad():
        batched = model.embed(ids, normalize=True)
        alone = [model.embed(ids[i : i + 1, : int((ids[i] != PAD).sum())], normalize=True) for i in range(3)]
        more_padding = model.embed(torch.cat([ids, torch.zeros(3, 5, dtype=torch.long)], 1), normalize=True)
    torch.testing.assert_close(batched, torch.cat(alone), atol=1e-6, rtol=0)
    torch.testing.assert_close(batched, more_padding, atol=1e-6, rtol=0)
    torch.testing.assert_close(batched.norm(dim=-1), torch.ones(3))


def test_explicit_attention_mask_equals_the_derived_one():
    model = make_model().eval()
    ids = torch.tensor([[5, 6, 7, 0], [3, 4, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(ids, (ids != PAD).long()))
        torch.testing.assert_close(model.embed(ids), model.embed(ids, (ids != PAD)))
    with pytest.raises(ValueError, match="attention_mask of shape"):
        model(ids, torch.ones(2, 3))


def test_token_types_and_attention_maps():
    model = make_model().eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        a = model(ids)
        b = model(ids, token_type_ids=torch.tensor([[0, 0, 1, 1]]))
        hidden, maps = model(ids, return_attention=True)
    assert a.shape == (1, 4, 32) and not torch.allclose(a, b)
    assert len(maps) == 2 and maps[0].shape == (1, 4, 4, 4)
    torch.testing.assert_close(hidden, a)


def test_mean_pool_and_errors():
    hidden = torch.arange(12.0).view(1, 4, 3)
    torch.testing.assert_close(mean_pool(hidden, torch.tensor([[True, True, False, False]])),
                               torch.tensor([[1.5, 2.5, 3.5]]))
    model = make_model()
    with pytest.raises(ValueError, match="num_labels > 0"):
        model.classify(torch.tensor([[3, 4]]))
    with pytest.raises(ValueError, match="out of the vocabulary"):
        model(torch.tensor([[3, V]]))


def test_pooler_head():
    model = EncoderModel(make_model().config, num_labels=3, pooler=True).eval()
    with torch.no_grad():
        logits = model.classify(torch.tensor([[1, 5, 6, 0]]))
    assert logits.shape == (1, 3)
