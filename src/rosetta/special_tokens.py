"""The special tokens and their fixed ids: the one place that says <pad> is 0, <s> 1, </s> 2, <unk> 3.

Rosetta's tokenizers put them first in every vocabulary (``rosetta.data.tokenizer``), and ``ModelConfig``
takes its default ``pad_id`` / ``bos_id`` / ``eos_id`` from here (``rosetta.nn.config``); a pretrained model
with another vocabulary (BERT's [PAD] = 0, [CLS] = 101, …) sets its own ids in its config.
"""

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

# BERT's [MASK] for masked-language-model tokenizers (``Tokenizer.train_wordpiece``), the id right after the four
# above; other vocabularies have no mask token. [CLS] and [SEP] are <s> and </s> (as in RoBERTa).
MASK = "<mask>"
MASK_ID = 4
