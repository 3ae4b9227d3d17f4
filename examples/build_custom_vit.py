"""Compose vitlib's blocks into a custom ViT variant and prove its numbers.

The variant: 6 encoder layers, 32x48 (height x width) images, 8x8 patches, no class token, the
patch tokens averaged ("mean" pooling), 10 classes. It is written from the blocks by hand, then
checked against ``vitlib.ViT`` built from the equivalent ``ViTConfig``: same parameter count (by
``count_parameters``), same FLOPs (by ``count_flops`` and by torch's own FLOP counter), and, with
the same weights, the same logits.

Run: ``python examples/build_custom_vit.py``
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import vitlib
from vitlib import PatchEmbedding, TransformerEncoderBlock, ViTConfig


class MeanPooledViT(nn.Module):
    """A ViT without a class token: patches, positions, encoder, norm, mean, head."""

    def __init__(
        self,
        img_size: tuple[int, int],
        patch_size: int,
        depth: int,
        dim: int,
        heads: int,
        mlp_size: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        num_patches = (img_size[0] // patch_size) * (img_size[1] // patch_size)
        self.patch_embedding = PatchEmbedding(
            in_channels=3, patch_size=patch_size, embedding_dim=dim
        )
        self.position_embedding = nn.Parameter(torch.randn(1, num_patches, dim) * 0.02)
        self.encoder = nn.Sequential(
            *(TransformerEncoderBlock(dim, heads, mlp_size, mlp_dropout=0.1) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.patch_embedding(images) + self.position_embedding  # eq. 1
        tokens = self.norm(self.encoder(tokens))  # eq. 2-3, then the norm of eq. 4
        return self.head(tokens.mean(dim=1))  # mean pooling instead of the class token


def measured_flops(model: nn.Module, images: Tensor) -> int:
    """FLOPs torch itself counts for one forward pass (the math attention kernel is countable)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images)
    return int(counter.get_total_flops())


def main() -> None:
    torch.manual_seed(0)
    model = MeanPooledViT(
        img_size=(32, 48), patch_size=8, depth=6, dim=192, heads=3, mlp_size=768, num_classes=10
    ).eval()
    config = ViTConfig(
        img_size=(32, 48),
        patch_size=8,
        num_transformer_layers=6,
        embedding_dim=192,
        mlp_size=768,
        num_heads=3,
        num_classes=10,
        class_token=False,
        pool="mean",
    )
    images = torch.randn(4, 3, 32, 48)
    logits = model(images)
    parameters = sum(p.numel() for p in model.parameters())
    flops = measured_flops(model, images[:1])

    print(
        f"custom variant: {config.num_transformer_layers} layers, 32x48 images, 8x8 patches, "
        f"{config.num_patches} tokens, mean pooling"
    )
    print(
        f"parameters: {parameters:,} (vitlib.count_parameters: {vitlib.count_parameters(config):,})"
    )
    print(
        f"FLOPs per image: {flops / 1e6:.1f} M (vitlib.count_flops: "
        f"{vitlib.count_flops(config) / 1e6:.1f} M)"
    )
    print(f"output shape: {tuple(logits.shape)}")
    library_model = vitlib.ViT.from_config(config).eval()
    renamed = {
        ("transformer_" + key if key.startswith("encoder.") else key): value
        for key, value in model.state_dict().items()
    }
    library_model.load_state_dict(renamed)
    same = torch.allclose(library_model(images), logits, atol=1e-5)
    print(f"vitlib.ViT with the same weights gives the same logits: {same}")


if __name__ == "__main__":
    main()
