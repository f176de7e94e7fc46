"""Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words"): the Transformer's encoder
reading an image as a sequence of patches.

    images (B, C, H, W) ─ PatchEmbedding: Conv2d, kernel = stride = P ─ patches (B, N, D),  N = (H/P)·(W/P)
        ─ [CLS] token in front ─ + learned positions (1, N+1, D) ─ dropout ─ (B, N+1, D)
        ─ N_layers × Pre-LN EncoderLayer ─ final LayerNorm ─ hidden (B, N+1, D)
        ─ hidden[:, 0] (the [CLS] vector) ─ Linear ─ logits (B, labels)

The paper's equations (§3.1), and where each one lives:

    z_0 = [x_class; x_p^1 E; …; x_p^N E] + E_pos         PatchEmbedding, ``cls_token``, ``position``
    z'_l = MSA(LN(z_{l-1})) + z_{l-1}                     rosetta.nn.blocks.EncoderLayer (norm_first=True)
    z_l  = MLP(LN(z'_l)) + z'_l                           the same layer's feed-forward (exact GELU)
    y    = LN(z_L^0)                                      LayerStack's final norm, then ``head``

"x_p E", the linear projection of each flattened P×P×C patch, is a convolution whose kernel and stride are
both P: each output position sees exactly one patch, and the kernel is E reshaped to (D, C, P, P).

The encoder layers are the same ``EncoderLayer`` / ``LayerStack`` as BERT's and GPT's; only the input differs.
A ViT has no vocabulary: its ``ModelConfig`` keeps the vocabulary fields at a placeholder size of 1 (ids 0)
only because ``ModelConfig`` validates them; nothing reads them. ``positional = "none"``: the learned 2-D
grid of positions is the ViT's own (``position``), added here, not by ``rosetta.nn``.

Reference implementation: Hugging Face ``transformers``' ``ViTForImageClassification`` (timm cannot be
installed beside this project's CPU torch). ``hf_vit_state_dict`` exports our weights under the names of its
checkpoints; tests/test_vit.py loads them into it and compares the logits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rosetta.nn.blocks import EncoderLayer
from rosetta.nn.config import ModelConfig
from rosetta.nn.stack import LayerStack, init_weights, num_parameters

# The ViT layout of a ModelConfig: Pre-LN with a final LayerNorm (ε 1e-6 as timm), exact GELU, biases, no √d
# scale, no token positions (the ViT adds its own), N(0, 0.02²) weights. No vocabulary: placeholders (see above).
VIT_LAYOUT: dict[str, Any] = dict(
    src_vocab_size=1, tgt_vocab_size=1, pad_id=0, bos_id=0, eos_id=0, n_decoder_layers=0,
    positional="none", norm="layernorm", norm_eps=1e-6, norm_first=True, activation="gelu", bias=True,
    scale_embeddings=False, embedding_norm=False, type_vocab_size=0, share_embeddings=False, tie_output=False,
    init_std=0.02, attention_dropout=0.0,
)


@dataclass(frozen=True)
class ImageSpec:
    """What a ViT expects to read: square images of ``image_size`` pixels and ``channels`` channels, cut into
    ``patch_size`` patches, each channel normalised as (x / 255 − mean) / std. Defaults: the paper's 224 / 16
    RGB with timm's ViT normalisation (mean = std = 0.5)."""

    image_size: int = 224
    patch_size: int = 16
    channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        for name in ("image_size", "patch_size", "channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) != self.channels:
                raise ValueError(f"{name} has {len(getattr(self, name))} values but channels={self.channels}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def grid(self) -> int:
        """Patches per side: image_size / patch_size."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """N = grid²; the model reads N + 1 positions ([CLS] first)."""
        return self.grid**2

    def replace(self, **changes: Any) -> ImageSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ImageSpec fields {unknown}; known fields are {sorted(known)}")
        return cls(**data)


IMAGE_FIELDS = tuple(f.name for f in fields(ImageSpec))

# name → image spec and model sizes. The sizes of a preset are any ModelConfig or ImageSpec fields.
# vit-tiny: 28×28 MNIST digits on 2 CPU cores (configs/mnist-vit.toml says how the size was chosen).
# vit-small: ViT-S/16 as in timm's vit_small_patch16_224 (d 384, 12 layers, 6 heads, MLP 4·d) at 224 px.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # the training pixels' mean and std, divided by 255
VIT_PRESETS: dict[str, dict[str, Any]] = {
    "vit-tiny": dict(image_size=28, patch_size=4, channels=1, mean=MNIST_MEAN, std=MNIST_STD,
                     d_model=64, n_heads=4, d_ff=128, n_encoder_layers=4, dropout=0.0),
    "vit-small": dict(image_size=224, patch_size=16, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                      d_model=384, n_heads=6, d_ff=1536, n_encoder_layers=12, dropout=0.0),
}


def vit_config(preset: str | None = None, **overrides: Any) -> tuple[ModelConfig, ImageSpec]:
    """(ModelConfig with the ViT layout, ImageSpec) of a preset, with any field of either overridden, e.g.
    ``vit_config("vit-tiny", patch_size=7, n_encoder_layers=6)``; ``preset=None`` starts from ``ImageSpec``'s
    and ``ModelConfig``'s defaults, e.g. ``vit_config(image_size=32, patch_size=8, channels=3, mean=(.5,)*3,
    std=(.5,)*3, d_model=64, n_heads=4, d_ff=128, n_encoder_layers=2)``."""
    if preset is not None and preset not in VIT_PRESETS:
        raise ValueError(f"unknown ViT preset {preset!r}; choose one of {sorted(VIT_PRESETS)}")
    values = {**(VIT_PRESETS[preset] if preset else {}), **overrides}
    model_fields = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(values) - model_fields - set(IMAGE_FIELDS))
    if unknown:
        raise ValueError(f"unknown ViT settings {unknown}; give ImageSpec fields {list(IMAGE_FIELDS)} or "
                         "ModelConfig fields")
    image = ImageSpec(**{k: v for k, v in values.items() if k in IMAGE_FIELDS})
    sizes = {k: v for k, v in values.items() if k not in IMAGE_FIELDS}
    config = ModelConfig(**{**VIT_LAYOUT, "max_len": image.num_patches + 1, **sizes})
    return config, image


class PatchEmbedding(nn.Module):
    """Images (B, C, H, W) → patch vectors (B, N, D), N = (H/P)·(W/P), in row-major patch order.

    x_p E for every flattened P×P×C patch x_p (the paper's "linear projection of flattened patches") is a
    Conv2d with kernel = stride = P: output position (i, j) is E applied to the patch at rows iP … iP+P−1,
    columns jP … jP+P−1."""

    def __init__(self, channels: int, patch_size: int, d_model: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, d_model, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.proj(images)  # (B, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)


def interpolate_positions(position: torch.Tensor, grid: int) -> torch.Tensor:
    """Position table (1, 1 + g², D) of a g×g patch grid → (1, 1 + grid², D) for a grid×grid one: the patch
    positions, seen as a g×g image of D channels, are resized bicubically (align_corners=False, as DINO and
    Hugging Face's ``interpolate_pos_encoding``); the [CLS] position (index 0) is kept as it is."""
    cls, patches = position[:, :1], position[:, 1:]
    g, d = round(patches.shape[1] ** 0.5), patches.shape[2]
    if g * g != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch positions do not form a square grid")
    if grid == g:
        return position
    image = patches.reshape(1, g, g, d).permute(0, 3, 1, 2)  # (1, D, g, g): row i, column j of the grid
    image = F.interpolate(image.float(), size=(grid, grid), mode="bicubic", align_corners=False)
    patches = image.permute(0, 2, 3, 1).reshape(1, grid * grid, d).to(position.dtype)
    return torch.cat([cls, patches], dim=1)


class ViT(nn.Module):
    """Vision Transformer for image classification (ViT-B/16 and kin): see the module docstring.

    ``forward(images)`` → logits (B, labels); with ``return_attention`` also each layer's attention weights
    (B, H, N+1, N+1), [CLS] at index 0 and patch (i, j) at 1 + i·grid + j. Images must be (B, C, S, S) with
    C = ``image.channels`` and S = ``image.image_size``, normalised as ``image`` says (see
    ``rosetta.data.images``); ``resize_positions`` adapts a trained model to another image size.
    """

    def __init__(self, config: ModelConfig, image: ImageSpec, num_labels: int):
        super().__init__()
        if config.positional != "none":
            raise ValueError(f"a ViT adds its own learned grid of positions: set positional='none', not "
                             f"{config.positional!r} (vit_config does)")
        if num_labels <= 0:
            raise ValueError(f"num_labels must be positive, got {num_labels}")
        self.config, self.image, self.num_labels = config, image, num_labels
        d = config.d_model
        self.patch_embed = PatchEmbedding(image.channels, image.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))  # x_class: a learned "token" in front of the patches
        self.position = nn.Parameter(torch.zeros(1, image.num_patches + 1, d))  # E_pos: [CLS], then row by row
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = LayerStack(config, config.n_encoder_layers, EncoderLayer)
        self.head = nn.Linear(d, num_labels)
        # Linear layers N(0, init_std²), as timm's trunc_normal(0.02); the patch Conv2d keeps PyTorch's default.
        init_weights(self, config)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.position, std=0.02)

    num_parameters = num_parameters

    def check_images(self, images: torch.Tensor) -> None:
        """ValueError unless images are (B, C, S, S) as ``self.image`` says (else a shape error deep inside)."""
        want = (self.image.channels, self.image.image_size, self.image.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(f"images of shape {tuple(images.shape)} do not fit this ViT: it reads (B, {want[0]}, "
                             f"{want[1]}, {want[2]}) (B, C, H, W); convert them with rosetta.data.images, or "
                             f"resize_positions({images.shape[-1]}) for another size")

    def encode(self, images: torch.Tensor, return_attention: bool = False
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """images (B, C, S, S) → hidden states (B, N+1, D) after the final norm, and per-layer attention weights
        (B, H, N+1, N+1) when asked (else an empty list)."""
        self.check_images(images)
        x = self.patch_embed(images)  # (B, N, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1) + self.position  # z_0: (B, N+1, D)
        hidden, attention = self.encoder(self.dropout(x), need_weights=return_attention)
        return hidden, [a["self"] for a in attention] if return_attention else []

    def forward(self, images: torch.Tensor, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """images (B, C, S, S) → logits (B, labels) from the [CLS] vector; with ``return_attention`` also the
        per-layer attention weights (B, H, N+1, N+1)."""
        hidden, attention = self.encode(images, return_attention)
        logits = self.head(hidden[:, 0])  # y = LN(z_L^0) → (B, labels)
        return (logits, attention) if return_attention else logits

    @torch.no_grad()
    def resize_positions(self, image_size: int) -> None:
        """Read ``image_size`` images from now on: the learned patch positions are interpolated bicubically to
        the new grid ([CLS] kept; see ``interpolate_positions``), as the paper does to fine-tune at a higher
        resolution (§3.2). The patch size and every other weight stay; the same size changes nothing."""
        image = self.image.replace(image_size=image_size)  # validates: a multiple of the patch size
        self.position = nn.Parameter(interpolate_positions(self.position.data, image.grid),
                                     requires_grad=self.position.requires_grad)
        self.image, self.config = image, self.config.replace(max_len=image.num_patches + 1)


# ------------------------------------------------------------------------------------- Hugging Face export
def hf_weight_map(n_layers: int) -> dict[str, list[str]]:
    """Our parameter name → the Hugging Face ``ViTForImageClassification`` checkpoint name(s) it holds, in the
    checkpoint layout of the published ViT models (google/vit-base-patch16-224 …); our fused ``qkv_proj`` is
    three of theirs (query, key, value), stacked along dim 0."""
    names = {
        "cls_token": ["vit.embeddings.cls_token"],
        "position": ["vit.embeddings.position_embeddings"],
        "encoder.final_norm.weight": ["vit.layernorm.weight"],
        "encoder.final_norm.bias": ["vit.layernorm.bias"],
        "head.weight": ["classifier.weight"],
        "head.bias": ["classifier.bias"],
    }
    for p in ("weight", "bias"):
        names[f"patch_embed.proj.{p}"] = [f"vit.embeddings.patch_embeddings.projection.{p}"]
        for i in range(n_layers):
            ours, hf = f"encoder.layers.{i}", f"vit.encoder.layer.{i}"
            names[f"{ours}.self_attn_norm.{p}"] = [f"{hf}.layernorm_before.{p}"]
            names[f"{ours}.self_attn.qkv_proj.{p}"] = [f"{hf}.attention.attention.{x}.{p}"
                                                       for x in ("query", "key", "value")]
            names[f"{ours}.self_attn.out_proj.{p}"] = [f"{hf}.attention.output.dense.{p}"]
            names[f"{ours}.feed_forward_norm.{p}"] = [f"{hf}.layernorm_after.{p}"]
            names[f"{ours}.feed_forward.w1.{p}"] = [f"{hf}.intermediate.dense.{p}"]
            names[f"{ours}.feed_forward.w2.{p}"] = [f"{hf}.output.dense.{p}"]
    return names


def hf_vit_state_dict(model: ViT) -> dict[str, torch.Tensor]:
    """Our weights under Hugging Face ``ViTForImageClassification`` checkpoint names (see ``hf_weight_map``):
    save them with safetensors beside ``hf_vit_config(model)`` as config.json and ``from_pretrained`` reads
    the directory."""
    state = model.state_dict()
    mapping = hf_weight_map(model.config.n_encoder_layers)
    if set(mapping) != set(state):
        raise ValueError(f"weight names do not match the ViT layout: {sorted(set(mapping) ^ set(state))}")
    out = {}
    for ours, theirs in mapping.items():
        parts = state[ours].chunk(len(theirs), dim=0) if len(theirs) > 1 else [state[ours]]
        out.update({name: part.detach().clone().contiguous() for name, part in zip(theirs, parts)})
    return out


def hf_vit_config(model: ViT) -> dict[str, Any]:
    """The Hugging Face config.json (as a dict) of ``model``: a ``ViTConfig`` with the same sizes."""
    c, image = model.config, model.image
    plain_heads = c.head_dim_k == c.head_dim_v == c.d_model // c.n_heads
    if c.activation != "gelu" or not c.norm_first or c.norm != "layernorm" or not c.bias or not plain_heads:
        raise ValueError("only the ViT layout (Pre-LN LayerNorm, exact GELU, biases, d_k = d_v = d_model / heads) "
                         "exports to Hugging Face")
    return {"model_type": "vit", "architectures": ["ViTForImageClassification"], "hidden_size": c.d_model,
            "num_hidden_layers": c.n_encoder_layers, "num_attention_heads": c.n_heads, "intermediate_size": c.d_ff,
            "hidden_act": "gelu", "hidden_dropout_prob": c.dropout,
            "attention_probs_dropout_prob": c.attention_dropout, "layer_norm_eps": c.norm_eps,
            "image_size": image.image_size, "patch_size": image.patch_size, "num_channels": image.channels,
            "qkv_bias": True, "num_labels": model.num_labels,
            "id2label": {str(i): str(i) for i in range(model.num_labels)},
            "label2id": {str(i): i for i in range(model.num_labels)}}
