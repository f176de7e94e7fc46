"""The pieces every model is built from; imports nothing else of Rosetta but ``special_tokens``.

    attention   scaled dot-product attention, masks, MultiHeadAttention, the key/value cache
    positional  sinusoidal, learned and rotary position encodings
    blocks      embeddings, norms, feed-forward, residual sublayers, encoder/decoder layers
    stack       a stack of layers, the incremental decoding state and step, initialisation
    config      ModelConfig: every size and variant as a flag, and the presets
"""
