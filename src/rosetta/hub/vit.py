"""ViT (``model_type: vit``, ViTForImageClassification) into Rosetta's ``ViT``, its preprocessing included.

The same checkpoint names that ``rosetta.models.vit.hf_weight_map`` writes when a Rosetta ViT goes to Hugging
Face are read back here (query, key and value stacked into our fused ``qkv_proj``):

    vit.embeddings.patch_embeddings.projection  → patch_embed.proj   (the Conv2d of kernel = stride = P)
    vit.embeddings.cls_token / position_embeddings → cls_token / position
    vit.encoder.layer.N.layernorm_before / attention.attention.{query,key,value} / attention.output.dense /
      layernorm_after / intermediate.dense / output.dense → encoder.layers.N.{self_attn_norm, self_attn.qkv_proj,
      self_attn.out_proj, feed_forward_norm, feed_forward.w1, feed_forward.w2}
    vit.layernorm, classifier → encoder.final_norm, head

preprocessor_config.json (ViTImageProcessor) becomes the model's ``ImageSpec``: ``size`` must be the model's
image size, pixels are rescaled by 1/255 and normalised by ``image_mean`` / ``image_std``. (Rosetta resizes
bicubically after padding a picture square, where the processor stretches it bilinearly: a picture already of
the model's size reads the same in both.) Only ViTForImageClassification loads: a ViT without a classifier has
nothing to answer ``classify``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rosetta.hub.registry import register_hf
from rosetta.models.pretrained import PretrainedError
from rosetta.models.vit import ImageSpec, ViT, hf_weight_map, vit_config
from rosetta.nn.config import ModelConfig

PREPROCESSOR_FILE = "preprocessor_config.json"


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """A ViT config.json → ``ModelConfig`` with the ViT layout (exact GELU, Pre-LN, biases)."""
    if hf.get("hidden_act", "gelu") != "gelu":
        raise PretrainedError(f"unsupported ViT hidden_act={hf['hidden_act']!r}; Rosetta's ViT uses exact GELU")
    if not hf.get("qkv_bias", True):
        raise PretrainedError("unsupported: a ViT without query/key/value biases (qkv_bias false)")
    config, _ = vit_config(**_image(hf), d_model=hf["hidden_size"], n_heads=hf["num_attention_heads"],
                           d_ff=hf["intermediate_size"], n_encoder_layers=hf["num_hidden_layers"],
                           norm_eps=hf.get("layer_norm_eps", 1e-12), dropout=hf.get("hidden_dropout_prob", 0.0),
                           attention_dropout=hf.get("attention_probs_dropout_prob", 0.0))
    return config


def _image(hf: dict[str, Any], preprocessor: dict[str, Any] | None = None) -> dict[str, Any]:
    """ImageSpec fields of config.json, with preprocessor_config.json's normalisation (default: 0.5, 0.5)."""
    channels = hf.get("num_channels", 3)
    p = preprocessor or {}
    mean = p.get("image_mean", [0.5] * channels) if p.get("do_normalize", True) else [0.0] * channels
    std = p.get("image_std", [0.5] * channels) if p.get("do_normalize", True) else [1.0] * channels
    return dict(image_size=hf["image_size"], patch_size=hf["patch_size"], channels=channels, mean=mean, std=std)


def image_spec(path: Path, hf: dict[str, Any]) -> ImageSpec:
    """The ``ImageSpec`` of a ViT directory: its config.json sizes and its preprocessor_config.json."""
    file = path / PREPROCESSOR_FILE
    preprocessor = None
    if file.is_file():
        try:
            preprocessor = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PretrainedError(f"{file} is not valid JSON ({e}); copy it again") from e
        size = preprocessor.get("size") or {}
        side = size.get("height", size.get("shortest_edge")) if isinstance(size, dict) else size
        if side is not None and (side != hf["image_size"] or size.get("width", side) != side):
            raise PretrainedError(f"{file}: images resized to {size}, but the model reads {hf['image_size']}² pixels")
        if preprocessor.get("do_rescale", True) and abs(preprocessor.get("rescale_factor", 1 / 255) - 1 / 255) > 1e-9:
            raise PretrainedError(f"{file}: rescale_factor {preprocessor['rescale_factor']} is not 1/255")
    return ImageSpec(**_image(hf, preprocessor))


def weights_from_hf(tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """ViTForImageClassification tensors → the state dict of Rosetta's ``ViT`` (pooler weights, if any, unused)."""
    mapping = hf_weight_map(config.n_encoder_layers)
    missing = [name for names in mapping.values() for name in names if name not in tensors]
    if missing:
        raise PretrainedError(f"{len(missing)} weights missing from the checkpoint: {', '.join(missing[:6])}")
    return {ours: torch.cat([tensors[n] for n in names]) if len(names) > 1 else tensors[names[0]]
            for ours, names in mapping.items()}


@register_hf("vit", family="vit")
class HFViT:
    config_from_hf = staticmethod(config_from_hf)
    weights_from_hf = staticmethod(weights_from_hf)

    @staticmethod
    def build(config: ModelConfig, hf: dict[str, Any], names: set[str]) -> ViT:
        if "classifier.weight" not in names:
            raise PretrainedError(f"unsupported architecture {(hf.get('architectures') or ['ViTModel'])[0]}: "
                                  "Rosetta reads ViTForImageClassification (a ViT with its classifier)")
        labels = len(hf.get("id2label") or {}) or hf.get("num_labels", 2)
        return ViT(config, ImageSpec(**_image(hf)), labels)

    @staticmethod
    def tokenizers(path: Path, hf: dict[str, Any]):
        """A ViT reads pixels: its "tokenizer" is the ``ImageSpec`` of preprocessor_config.json."""
        return image_spec(path, hf), None
