"""Smaller and faster after training.

    heads     head importance from a head mask's gradient, physical head pruning (Michel et al., 2019)
    pruning   pruning a saved model directory; the BLEU-vs-heads-removed curve
    distill   sequence-level knowledge distillation with a resumable teacher-translation cache, and the
              word-level KD loss (Kim & Rush, 2016)
    export    a model out of PyTorch: ONNX Runtime (onnx_export) and CTranslate2 (ct2_export)
"""
