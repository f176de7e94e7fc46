"""A synthetic copy task for Trainer tests (no corpus, no tokenizer): src → the same sequence."""

import random

import torch

from rosetta import ModelConfig, Transformer
from rosetta.train import label_smoothed_nll

PAD, BOS, EOS, V = 0, 1, 2, 12


class CopyBatches:
    """A resumable stream of random copy-task batches (src → the same sequence)."""

    def __init__(self, seed: int, batch_size: int = 16, rank: int = 0, world_size: int = 1):
        self.seed, self.batch_size, self.index = seed, batch_size, 0
        self.rank, self.world_size = rank, world_size

    def _batch(self, index: int):
        rng = random.Random(self.seed * 100003 + index)
        seqs = [[rng.randrange(3, V) for _ in range(rng.randrange(2, 7))] for _ in range(self.batch_size)]
        width = max(map(len, seqs)) + 1
        src = torch.full((len(seqs), width), PAD)
        tgt_in = torch.full((len(seqs), width), PAD)
        tgt_out = torch.full((len(seqs), width), PAD)
        for i, s in enumerate(seqs):
            src[i, : len(s) + 1] = torch.tensor(s + [EOS])
            tgt_in[i, : len(s) + 1] = torch.tensor([BOS] + s)
            tgt_out[i, : len(s) + 1] = torch.tensor(s + [EOS])
        return src, tgt_in, tgt_out

    def __iter__(self):
        while True:
            batch = self._batch(self.index * self.world_size + self.rank)
            self.index += 1
            yield batch

    def state_dict(self):
        return {"index": self.index}

    def load_state_dict(self, state):
        self.index = state["index"]


class CopyTask:
    metric = "valid_loss"
    higher_is_better = False

    def __init__(self, seed=0, dropout=0.1, bias=True):
        torch.manual_seed(seed)
        self.config = ModelConfig.preset("tiny", src_vocab_size=V, tgt_vocab_size=V, share_embeddings=True,
                                         dropout=dropout, bias=bias)
        self.model = Transformer(self.config)
        self.device = torch.device("cpu")

    def to(self, device):
        self.model.to(device)

    def batches(self, rank, world_size):
        return CopyBatches(seed=7, rank=rank, world_size=world_size)

    def count_tokens(self, batch):
        return int((batch[2] != PAD).sum())

    def loss(self, model, batch, label_smoothing):
        src, tgt_in, tgt_out = batch
        return label_smoothed_nll(model(src, tgt_in), tgt_out, PAD, label_smoothing)

    def evaluate(self, model, full):
        batch = CopyBatches(seed=999)._batch(0)
        _, nll, n = self.loss(model, batch, 0.0)
        return {"valid_loss": float(nll) / n}

    def model_config(self):
        return {"family": "translation", "model": self.config.to_dict()}

    def write_tokenizers(self, directory):
        pass
