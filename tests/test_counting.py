"""count_parameters and count_flops are exact and match the published numbers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vitlib import (
    ConfigError,
    InputTypeError,
    MLPBlock,
    PatchEmbedding,
    TransformerEncoderBlock,
    ViT,
    ViTConfig,
    count_flops,
    count_parameters,
    optimize_for_inference,
)

from .helpers import TINY
from .strategies import small_configs

TORCHVISION_PARAMETERS = {
    "ViT-B/16": 86_567_656,
    "ViT-B/32": 88_224_232,
    "ViT-L/16": 304_326_632,
    "ViT-L/32": 306_535_400,
    "ViT-H/14": 632_045_800,
}
# torchvision's "GFLOPS" are giga multiply-adds; ours count a multiply-add as 2 FLOPs.
TORCHVISION_GMACS = {
    "ViT-B/16": 17.564,
    "ViT-B/32": 4.409,
    "ViT-L/16": 61.555,
    "ViT-L/32": 15.378,
    "ViT-H/14": 167.295,
}


def _meta_model(cfg: ViTConfig) -> ViT:
    with torch.device("meta"):
        return ViT.from_config(cfg)


@given(small_configs())
def test_closed_form_equals_the_parameters_of_the_built_model(cfg: ViTConfig) -> None:
    model = ViT.from_config(cfg)
    assert count_parameters(cfg) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["ViT-Ti/16", "ViT-S/8", "ViT-L/14", "ViT-H/14"])
@pytest.mark.parametrize("extras", [{}, {"representation_size": 768, "num_classes": 21843}])
def test_closed_form_equals_large_models_on_meta(name: str, extras: dict[str, int]) -> None:
    cfg = ViTConfig.from_preset(name, **extras)
    assert count_parameters(cfg) == sum(p.numel() for p in _meta_model(cfg).parameters())


@pytest.mark.parametrize(("name", "expected"), TORCHVISION_PARAMETERS.items())
def test_parameters_equal_torchvision_published_counts(name: str, expected: int) -> None:
    assert count_parameters(name) == expected


@pytest.mark.parametrize(("name", "gmacs"), TORCHVISION_GMACS.items())
def test_flops_within_half_a_percent_of_torchvision(name: str, gmacs: float) -> None:
    assert count_flops(name) == pytest.approx(2 * gmacs * 1e9, rel=0.005)


@pytest.mark.parametrize(("size", "millions"), [("B", 86), ("L", 307), ("H", 632)])
def test_table_1_parameter_counts_within_one_percent(size: str, millions: int) -> None:
    # Table 1 is for the ImageNet-21k models: patch 16 (14 for Huge) and a 21843-class head.
    # Without the head, Large/16 has 303.3M; the 1000-class head makes it 304.3M, the 21k head 325M:
    # Table 1's 307M matches none exactly, hence the tolerance (see docs/architecture.md).
    patch = 14 if size == "H" else 16
    cfg = ViTConfig.from_preset(f"ViT-{size}/{patch}", num_classes=1000)
    assert count_parameters(cfg) == pytest.approx(millions * 1e6, rel=0.01)


def test_chapter_three_class_vit_b16_has_85_800_963_parameters() -> None:
    assert count_parameters(ViTConfig(num_classes=3)) == 85_800_963
    assert sum(p.numel() for p in ViT(num_classes=3).parameters()) == 85_800_963


@given(small_configs())
def test_flops_equal_torch_flop_counter(cfg: ViTConfig) -> None:
    """Every matmul torch executes (conv, linear, attention) is counted, and nothing else."""
    model = ViT.from_config(cfg).eval()
    images = torch.randn(1, cfg.in_channels, *cfg.image_hw)
    # The counter has no formula for the fused CPU attention kernel; the math kernel runs the
    # same products as plain batched matmuls, which it does count.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images)
    assert count_flops(cfg) == counter.get_total_flops()
    fast = optimize_for_inference(model, "fp32")  # the class-token shortcut
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        fast(images)
    assert count_flops(cfg, class_token_shortcut=True) == counter.get_total_flops()
    if cfg.pool == "token":
        assert count_flops(cfg, class_token_shortcut=True) < count_flops(cfg)


def test_counts_accept_preset_names_and_reject_other_types() -> None:
    assert count_parameters("ViT-B/16") == count_parameters(ViTConfig.from_preset("ViT-B/16"))
    with pytest.raises(TypeError, match=r"config must be a vitlib\.ViTConfig or a preset name"):
        count_flops(42)  # type: ignore[arg-type]


class _MeanPooled(nn.Module):
    """A variant assembled from the blocks (the README's): no class token, mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embedding = PatchEmbedding(in_channels=3, patch_size=8, embedding_dim=24)
        self.position_embedding = nn.Parameter(torch.zeros(1, 4 * 6, 24))
        self.encoder = nn.Sequential(*(TransformerEncoderBlock(24, 2, 48) for _ in range(2)))
        self.norm = nn.LayerNorm(24, eps=1e-6)
        self.head = nn.Linear(24, 5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embedding(images) + self.position_embedding
        logits: torch.Tensor = self.head(self.norm(self.encoder(tokens)).mean(dim=1))
        return logits


def test_a_model_built_from_the_blocks_gets_both_numbers() -> None:
    """The same architecture as a config counts the same in closed form."""
    model = _MeanPooled()
    twin = ViTConfig(
        img_size=(32, 48), patch_size=8, num_transformer_layers=2, embedding_dim=24,
        mlp_size=48, num_heads=2, num_classes=5, class_token=False, pool="mean",
    )  # fmt: skip
    assert count_parameters(model) == count_parameters(twin)
    model.train()
    assert count_flops(model, input_size=(3, 32, 48)) == count_flops(twin)
    assert model.training, "the mode is restored"


@given(small_configs())
def test_a_built_vit_measures_what_its_config_counts(cfg: ViTConfig) -> None:
    model = ViT(cfg)
    assert count_parameters(model) == count_parameters(cfg)
    assert count_flops(model) == count_flops(cfg)
    fast = optimize_for_inference(model, "fp32")
    assert count_flops(fast) == count_flops(cfg, class_token_shortcut=True)


def test_counting_a_module_asks_for_what_it_cannot_know() -> None:
    block = MLPBlock(embedding_dim=8, mlp_size=16)
    with pytest.raises(
        ConfigError, match=r"needs input_size, the shape of one input, for a MLPBlock"
    ):
        count_flops(block)
    with pytest.raises(ConfigError, match=r"pass the copy vitlib\.optimize_for_inference"):
        count_flops(ViT(**TINY), class_token_shortcut=True)
    with pytest.raises(ConfigError, match=r"input_size=.* is for a module"):
        count_flops("ViT-Ti/16", input_size=(3, 32, 32))
    with pytest.raises(ConfigError, match=r"each side of input_size must be an int >= 1, got 0"):
        count_flops(block, input_size=(0, 8))
    with pytest.raises(InputTypeError, match="config"):
        count_parameters(object())  # type: ignore[arg-type]
