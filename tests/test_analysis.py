"""`vitlib.analysis`: the paper's Fig. 6 and 7 analyses on cases whose answer is known by hand."""

from __future__ import annotations

import math
import re
import sys
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from vitlib import (
    MultiheadSelfAttentionBlock,
    TransformerEncoderBlock,
    ViT,
    load_pretrained,
    save_pretrained,
)
from vitlib.analysis import (
    attention_maps,
    attention_rollout,
    embedding_filters,
    mean_attention_distance,
    position_embedding_similarity,
    rollout_map,
)
from vitlib.analysis.figures import (
    plot_attention_distance,
    plot_attention_rollout,
    plot_embedding_filters,
    plot_position_similarity,
    similarity_mosaic,
)
from vitlib.errors import DataError, InputShapeError

from .helpers import ROOT, load_module, tiny_vit


class FixedAttention(MultiheadSelfAttentionBlock):
    """An attention block whose weights are given: every query row is ``row`` (length T)."""

    def __init__(self, row: Tensor, num_heads: int) -> None:
        super().__init__(embedding_dim=12, num_heads=num_heads)
        self.row = row

    def forward(
        self, x: Tensor, need_weights: bool = False, *, num_queries: int | None = None
    ) -> Any:
        batch, tokens, _ = x.shape
        queries = tokens if num_queries is None else num_queries
        weights = self.row.expand(batch, self.num_heads, queries, tokens)
        out = torch.zeros_like(x[:, :queries])
        return (out, weights) if need_weights else out


def _blocks(model: ViT) -> list[TransformerEncoderBlock]:
    return [
        block for block in model.transformer_encoder if isinstance(block, TransformerEncoderBlock)
    ]


def _uniform_attention(model: ViT) -> ViT:
    """Zero every query and key projection: the logits are 0, so every weight is 1 / T."""
    with torch.no_grad():
        for block in _blocks(model):
            block.msa_block.qkv.weight[:24].zero_()
            block.msa_block.qkv.bias[:24].zero_()
    return model


# ---- attention_maps ------------------------------------------------------------------------------


def test_attention_maps_are_what_each_block_returns_on_request() -> None:
    model, images = tiny_vit(num_register_tokens=2), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        maps = attention_maps(model, images)
        tokens = model.embed(images)
        for layer, block in enumerate(_blocks(model)):
            _, expected = block.msa_block(tokens, need_weights=True)
            torch.testing.assert_close(maps[layer], expected)  # the fast path before it
            tokens = block(tokens)
    assert maps.shape == (2, 2, 3, 1 + 2 + 16, 1 + 2 + 16)
    torch.testing.assert_close(maps.sum(dim=-1), torch.ones(2, 2, 3, 19))


def test_attention_maps_of_chosen_layers_run_no_later_block() -> None:
    model, images = tiny_vit(num_transformer_layers=4), torch.randn(1, 3, 16, 16)
    calls: list[int] = []
    for index, block in enumerate(model.transformer_encoder):
        block.register_forward_hook(lambda *_, index=index: calls.append(index))
    every = attention_maps(model, images)
    calls.clear()
    chosen = attention_maps(model, images, layers=[2, 0])
    assert calls == [0, 1, 2]
    torch.testing.assert_close(chosen, every[[2, 0]], rtol=0, atol=0)
    torch.testing.assert_close(attention_maps(model, images, layers=1), every[3:], rtol=0, atol=0)


def test_the_model_runs_in_eval_mode_and_keeps_its_own_mode_and_fast_path() -> None:
    model = tiny_vit(mlp_dropout=0.5, attn_dropout=0.5, embedding_dropout=0.5).train()
    images = torch.randn(2, 3, 16, 16)
    first, second = attention_maps(model, images), attention_maps(model, images)
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # no dropout
    assert model.training
    assert not first.requires_grad
    for module in model.modules():  # the hooks are gone
        assert not module._forward_hooks
        assert not module._forward_pre_hooks
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(attention_maps(model, images), first)


# ---- attention_rollout ---------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 3])
def test_rollout_of_uniform_attention_is_the_average_plus_the_residual(layers: int) -> None:
    model = _uniform_attention(tiny_vit(num_transformer_layers=layers))
    tokens = 17  # class token + 16 patches
    rollout = attention_rollout(model, torch.randn(2, 3, 16, 16))
    # (0.5 U + 0.5 I)^L = 0.5^L I + (1 - 0.5^L) U, U the all-1/T matrix (U @ U = U)
    kept = 0.5**layers
    expected = kept * torch.eye(tokens) + (1 - kept) * torch.full((tokens, tokens), 1 / tokens)
    torch.testing.assert_close(rollout, expected.expand(2, -1, -1))
    # the class token's map over the patches is the plain average: the same for every patch
    torch.testing.assert_close(
        rollout_map(model, torch.randn(1, 3, 16, 16)), torch.full((1, 4, 4), (1 - kept) / tokens)
    )


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_rollout_of_one_hot_attention_to_the_class_token_ends_there(head_fusion: Any) -> None:
    model = tiny_vit(num_transformer_layers=3)
    to_class_token = torch.zeros(17)
    to_class_token[0] = 1.0
    for block in model.transformer_encoder:
        block.msa_block = FixedAttention(to_class_token, num_heads=3)
    rollout = attention_rollout(model, torch.randn(2, 3, 16, 16), head_fusion=head_fusion)
    # row 0 (the class token) is e_0; patch i keeps 0.5^3 of itself, the rest is the class token
    expected = 0.125 * torch.eye(17)
    expected[:, 0] += 0.875
    expected[0, 0] = 1.0
    torch.testing.assert_close(rollout, expected.expand(2, -1, -1))
    assert rollout_map(model, torch.randn(1, 3, 16, 16)).abs().max() == 0


def test_rollout_is_the_product_of_the_residual_averaged_layers() -> None:
    model, images = tiny_vit(num_transformer_layers=3), torch.randn(2, 3, 16, 16)
    maps = attention_maps(model, images)
    expected = torch.eye(17).expand(2, -1, -1)
    for layer in maps:  # written out: A_L ... A_1 of (0.5 mean_h(W) + 0.5 I), rows to sum 1
        step = 0.5 * layer.mean(dim=1) + 0.5 * torch.eye(17)
        expected = (step / step.sum(dim=-1, keepdim=True)) @ expected
    torch.testing.assert_close(attention_rollout(model, images), expected)
    torch.testing.assert_close(rollout_map(model, images), expected[:, 0, 1:].reshape(2, 4, 4))


def test_rollout_map_of_a_mean_pooled_model_averages_the_patch_rows() -> None:
    model, images = tiny_vit(pool="mean", num_register_tokens=1), torch.randn(2, 3, 16, 16)
    rollout = attention_rollout(model, images)
    expected = rollout[:, 2:, 2:].mean(dim=1).reshape(2, 4, 4)
    torch.testing.assert_close(rollout_map(model, images), expected)


def test_discarding_zeroes_the_smallest_fused_weights_before_the_residual() -> None:
    model = tiny_vit(num_transformer_layers=1)
    row = torch.arange(1.0, 18.0)
    row /= row.sum()  # token j gets weight proportional to j + 1
    model.transformer_encoder[0].msa_block = FixedAttention(row, num_heads=3)
    # 136.5 / 289 of the 17 x 17 entries: int(136.5) = 136 = 8 x 17, the 8 smallest columns
    rollout = attention_rollout(model, torch.randn(1, 3, 16, 16), discard_ratio=136.5 / 289)
    kept = row.clone()
    kept[:8] = 0.0
    expected = 0.5 * kept + 0.5 * torch.eye(17)  # then the residual, then rows summing to 1
    torch.testing.assert_close(rollout[0], expected / expected.sum(dim=-1, keepdim=True))


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (
            {"head_fusion": "median"},
            ValueError,
            r"one of 'mean', 'max', 'min', got 'median' \(did you mean 'mean'\?\)",
        ),
        (
            {"discard_ratio": 1.0},
            ValueError,
            r"discard_ratio must be a number in \[0, 1\), got 1\.0",
        ),
        (
            {"discard_ratio": -0.1},
            ValueError,
            r"discard_ratio must be .* got -0.1",
        ),
        ({"discard_ratio": "0.9"}, TypeError, r"a number in \[0, 1\), got '0.9' \(str\)"),
    ],
)
def test_bad_rollout_arguments_are_refused(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        attention_rollout(tiny_vit(), torch.randn(1, 3, 16, 16), **arguments)


# ---- mean_attention_distance ---------------------------------------------------------------------


def test_uniform_attention_on_a_2x2_grid_spans_2_plus_sqrt2_pixels() -> None:
    # 4-pixel patches on an 8x8 image: from any corner patch the centres lie 0, 4, 4 and 4*sqrt(2)
    # pixels away, so the uniform average is (8 + 4 sqrt 2) / 4 = 2 + sqrt 2 for every head
    model = _uniform_attention(tiny_vit(img_size=8))
    distance = mean_attention_distance(model, torch.randn(3, 3, 8, 8))
    torch.testing.assert_close(distance, torch.full((2, 3), 2 + math.sqrt(2)))


def test_attention_to_itself_spans_0_pixels_and_the_class_token_is_left_out() -> None:
    model = tiny_vit(img_size=8, num_transformer_layers=1)  # 1 + 4 tokens
    half_to_class_token = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0])  # the rest to patch 0
    model.transformer_encoder[0].msa_block = FixedAttention(half_to_class_token, num_heads=3)
    # query patch 0 looks at itself (0 px); patches 1 and 2 at patch 0, 4 px away; patch 3,
    # 4 sqrt 2 px away: the mean over queries is (0 + 4 + 4 + 4 sqrt 2) / 4
    distance = mean_attention_distance(model, torch.randn(1, 3, 8, 8))
    torch.testing.assert_close(distance, torch.full((1, 3), 2 + math.sqrt(2)))


def test_mean_distance_is_the_attention_weighted_distance_written_out() -> None:
    model = tiny_vit(img_size=(8, 12), patch_size=(4, 2), dynamic_img_size=True)
    images = torch.randn(2, 3, 12, 8)  # a 3 x 4 grid of 4 x 2 patches
    maps = attention_maps(model, images)[..., 1:, 1:]
    centres = [(4 * r, 2 * c) for r in range(3) for c in range(4)]
    expected = torch.zeros(2, 3)
    for layer in range(2):
        for head in range(3):
            total = torch.tensor(0.0)
            for image in range(2):
                for query, (qr, qc) in enumerate(centres):
                    weights = maps[layer, image, head, query]
                    for key, (kr, kc) in enumerate(centres):
                        total += weights[key] / weights.sum() * math.hypot(qr - kr, qc - kc)
            expected[layer, head] = total / (2 * len(centres))
    torch.testing.assert_close(mean_attention_distance(model, images), expected)


# ---- position_embedding_similarity ---------------------------------------------------------------


def test_identical_position_embeddings_are_all_similar() -> None:
    model = tiny_vit(img_size=(8, 12))
    with torch.no_grad():
        model.position_embedding.copy_(torch.randn(12).expand_as(model.position_embedding))
    similarity = position_embedding_similarity(model)
    assert similarity.shape == (2, 3, 2, 3)
    torch.testing.assert_close(similarity, torch.ones(2, 3, 2, 3))


def test_similarity_is_the_cosine_of_each_pair_of_patch_positions() -> None:
    model = tiny_vit(img_size=(8, 12), num_register_tokens=1)
    similarity = position_embedding_similarity(model)
    patches = model.position_embedding.detach()[0, 1:]  # the class token's is left out
    for r, c, r2, c2 in [(0, 0, 0, 0), (0, 1, 1, 2), (1, 2, 0, 0)]:
        expected = torch.cosine_similarity(patches[3 * r + c], patches[3 * r2 + c2], dim=0)
        torch.testing.assert_close(similarity[r, c, r2, c2], expected)


# ---- embedding_filters ---------------------------------------------------------------------------


def test_one_hot_filters_come_back_as_their_principal_components() -> None:
    model = tiny_vit()  # 12 filters of 3 x 4 x 4 pixels
    pixels = [5, 40, 0, 17, 33, 12]  # where each pair of filters has its single non-zero value
    with torch.no_grad():
        flat = torch.zeros(12, 48)
        for rank, pixel in enumerate(pixels):  # +a and -a: the mean filter is 0; a falls
            flat[2 * rank, pixel], flat[2 * rank + 1, pixel] = 6.0 - rank, rank - 6.0
        model.patch_embedding.patcher.weight.copy_(flat.view(12, 3, 4, 4))
    components = embedding_filters(model, k=6)
    assert components.shape == (6, 3, 4, 4)
    torch.testing.assert_close(components.view(6, 48), torch.eye(48)[pixels])


@given(seed=st.integers(0, 2**16), k=st.integers(1, 11))
def test_components_are_orthonormal_and_each_largest_entry_is_positive(seed: int, k: int) -> None:
    components = embedding_filters(tiny_vit(seed), k=k).view(k, -1)
    torch.testing.assert_close(components @ components.T, torch.eye(k), atol=1e-5, rtol=0)
    largest = components.gather(1, components.abs().argmax(dim=1, keepdim=True))
    assert (largest > 0).all()


@pytest.mark.parametrize(
    ("k", "error", "message"),
    [
        (12, ValueError, r"k must be an int >= 1 and <= 11, got 12; the 12 filters of 3x4x4"),
        (0, ValueError, r"k must be an int >= 1 and <= 11, got 0"),
        (2.0, TypeError, r"k must be an int >= 1 and <= 11, got 2.0 \(float\)"),
    ],
)
def test_bad_k_is_refused(k: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        embedding_filters(tiny_vit(), k=k)


# ---- every analysis ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "analysis",
    [
        lambda model: attention_maps(model, torch.randn(1, 3, 16, 16)),
        lambda model: attention_rollout(model, torch.randn(1, 3, 16, 16)),
        lambda model: rollout_map(model, torch.randn(1, 3, 16, 16)),
        lambda model: mean_attention_distance(model, torch.randn(1, 3, 16, 16)),
        position_embedding_similarity,
        embedding_filters,
    ],
)
def test_anything_but_a_vit_is_refused_by_name(analysis: Any) -> None:
    with pytest.raises(TypeError, match=r"model must be a vitlib.ViT for \w+ \(vitlib.create_mo"):
        analysis(torch.nn.Linear(2, 2))


def test_images_are_checked_as_forward_checks_them() -> None:
    with pytest.raises(ValueError, match=r"expected 3 input channels, got 1"):
        mean_attention_distance(tiny_vit(), torch.randn(1, 1, 16, 16))


@pytest.mark.parametrize(
    "analysis",
    [attention_maps, attention_rollout, rollout_map, mean_attention_distance],
    ids=lambda analysis: analysis.__name__,
)
def test_an_empty_batch_is_refused_by_every_analysis_of_images(analysis: Any) -> None:
    """Nothing to analyse: refused (mean_attention_distance would average 0 images into NaN)."""
    model = tiny_vit()
    with pytest.raises(
        InputShapeError, match=r"images is an empty batch \(shape \(0, 3, 16, 16\)\)"
    ):
        analysis(model, torch.randn(0, 3, 16, 16))
    with pytest.raises(InputShapeError, match=r"expected 3 input channels"):
        analysis(model, torch.randn(0, 1, 16, 16))  # the model's own checks come first


@pytest.mark.parametrize(
    "analysis",
    [attention_maps, attention_rollout, rollout_map, mean_attention_distance],
    ids=lambda analysis: analysis.__name__,
)
def test_nan_images_or_weights_stop_every_analysis_instead_of_returning_nan(analysis: Any) -> None:
    images = torch.randn(2, 3, 16, 16)
    images[1, 0, 0, 0] = math.nan
    with pytest.raises(DataError, match=r"attention weights of block 0 are NaN or infinite"):
        analysis(tiny_vit(), images)
    model = tiny_vit()
    with torch.no_grad():
        _blocks(model)[1].msa_block.qkv.weight[0, 0] = math.inf
    with pytest.raises(DataError, match=r"attention weights of block 1 are NaN or infinite"):
        analysis(model, torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize(
    ("analysis", "most_alive"),
    [
        (lambda model, images: attention_rollout(model, images), 1),
        (lambda model, images: mean_attention_distance(model, images), 1),
        (lambda model, images: attention_maps(model, images), 5),  # its result holds them all
    ],
)
def test_only_one_earlier_layers_attention_is_alive_at_a_time(
    analysis: Any, most_alive: int
) -> None:
    model = tiny_vit(num_transformer_layers=6)
    alive: list[weakref.ref[Tensor]] = []
    counts: list[int] = []

    def count_and_track(module: Any, args: Any, kwargs: Any, output: Any) -> None:
        counts.append(sum(ref() is not None for ref in alive))
        if kwargs.get("need_weights"):
            alive.append(weakref.ref(output[1]))

    for block in _blocks(model):
        block.msa_block.register_forward_hook(count_and_track, with_kwargs=True)
    analysis(model, torch.randn(1, 3, 16, 16))
    assert len(counts) == 6
    assert max(counts) == most_alive


# ---- a model the project has not seen ------------------------------------------------------------


@pytest.mark.slow
def test_maps_and_intermediates_match_huggingface_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers", reason="the dev requirements install it")
    config = transformers.ViTConfig(
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        image_size=32,
        patch_size=8,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    reference = transformers.ViTModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():  # far from the init, so a swapped tensor cannot go unnoticed
        for name, parameter in reference.named_parameters():
            base = float(name.endswith("norm_before.weight"))
            parameter.copy_(base + 0.3 * torch.randn_like(parameter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path, num_classes=0)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values=images, output_attentions=True, output_hidden_states=True)
        result = model.forward_intermediates(images)
    torch.testing.assert_close(attention_maps(model, images), torch.stack(expected.attentions))
    # tokens of magnitude ~10 after three blocks
    hidden = list(expected.hidden_states[1:])
    torch.testing.assert_close(result.intermediates, hidden, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(result.features, expected.last_hidden_state, atol=1e-4, rtol=1e-4)


# ---- pictures (vitlib[plots]) --------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NOT_A_TENSOR: Any = "map"


@pytest.fixture
def matplotlib() -> Any:
    return pytest.importorskip("matplotlib", reason="the dev requirements install it")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _pictures(model: ViT, images: Tensor) -> dict[str, Any]:
    """Each plot function with the analysis result it draws."""
    return {
        "filters": lambda path, **kw: plot_embedding_filters(
            embedding_filters(model, 5), path, **kw
        ),
        "similarity": lambda path, **kw: plot_position_similarity(
            position_embedding_similarity(model), path, **kw
        ),
        "distance": lambda path, **kw: plot_attention_distance(
            mean_attention_distance(model, images), path, **kw
        ),
        "rollout": lambda path, **kw: plot_attention_rollout(
            images[0], rollout_map(model, images)[0], path, **kw
        ),
    }


@pytest.mark.parametrize("picture", ["filters", "similarity", "distance", "rollout"])
def test_each_picture_is_a_png_that_is_never_silently_replaced(
    matplotlib: Any, picture: str, tmp_path: Path
) -> None:
    draw = _pictures(tiny_vit(), torch.randn(2, 3, 16, 16))[picture]
    out = draw(tmp_path / "new" / "folder" / f"{picture}.png")
    assert out == tmp_path / "new" / "folder" / f"{picture}.png"
    width, height = _png_size(out)
    assert width > 200
    assert height > 100
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match=r"already exists; pass overwrite=True"):
        draw(out)
    assert out.read_bytes() == before
    draw(out, overwrite=True)
    with pytest.raises(ValueError, match=r"saved as PNG, got path .*\.jpg"):
        draw(tmp_path / f"{picture}.jpg")


def test_the_similarity_mosaic_puts_tile_r_c_at_row_r_column_c() -> None:
    similarity = torch.rand(2, 3, 2, 3)
    mosaic = similarity_mosaic(similarity)
    assert mosaic.shape == (2 * 3 - 1, 3 * 4 - 1)
    for row in range(2):
        for col in range(3):
            tile = mosaic[3 * row : 3 * row + 2, 4 * col : 4 * col + 3]
            assert (tile == similarity[row, col].numpy()).all()
    assert torch.isnan(torch.from_numpy(mosaic[2])).all()  # the gap between the tile rows
    assert torch.isnan(torch.from_numpy(mosaic[:, 3])).all()  # and between the columns


@pytest.mark.parametrize(
    ("draw", "message"),
    [
        (lambda p: plot_embedding_filters(torch.rand(4, 2, 3, 3), p), r"C = 1 or 3, got shape"),
        (lambda p: plot_embedding_filters(torch.rand(0, 1, 3, 3), p), r"filters is empty"),
        (lambda p: plot_embedding_filters(torch.rand(4, 1, 3, 3), p, columns=0), r"columns must"),
        (
            lambda p: plot_position_similarity(torch.rand(2, 3, 3, 2), p),
            r"got shape \(2, 3, 3, 2\)",
        ),
        (
            lambda p: plot_attention_distance(torch.rand(4), p),
            r"\(layers, heads\), got shape \(4,\)",
        ),
        (
            lambda p: plot_attention_rollout(torch.rand(1, 3, 8, 8), torch.rand(2, 2), p),
            r"images\[0\]",
        ),
        (lambda p: plot_attention_rollout(torch.rand(3, 8, 8), torch.rand(1, 2, 2), p), r"\[0\]$"),
        (lambda p: plot_attention_rollout(torch.rand(3, 8, 8), NOT_A_TENSOR, p), r"got str"),
    ],
)
def test_tensors_of_other_shapes_are_refused_with_the_fix(
    matplotlib: Any, draw: Any, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        draw(tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "vitlib\[plots\]"'):
        plot_attention_distance(torch.rand(2, 3), tmp_path / "d.png")


# ---- examples/inspect_model.py -------------------------------------------------------------------

EXAMPLE_PICTURES = [
    "filters.png",
    "position_similarity.png",
    "attention_distance.png",
    "attention_rollout.png",
]


@pytest.mark.slow
def test_the_example_draws_every_picture_of_a_random_model_and_keeps_them(
    matplotlib: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sklearn", reason="the digits need scikit-learn")
    example = load_module(ROOT / "examples" / "inspect_model.py")
    arguments = ["--preset", "ViT-Ti/4", "--image-size", "16", "--num-images", "3"]
    assert example.main([*arguments, "--output-dir", str(tmp_path)]) == 0
    for name in EXAMPLE_PICTURES:
        _png_size(tmp_path / name)
    assert "mean attention distance per layer" in capsys.readouterr().out
    assert example.main([*arguments, "--output-dir", str(tmp_path)]) == 2
    assert "already exist; pass --overwrite to replace the pictures" in capsys.readouterr().err


@pytest.mark.slow
def test_the_example_reads_a_checkpoint_and_an_image_file(matplotlib: Any, tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image", reason="the dev requirements install Pillow")
    example = load_module(ROOT / "examples" / "inspect_model.py")
    save_pretrained(tiny_vit(num_register_tokens=1), tmp_path / "model")
    image.new("RGB", (30, 20), color=(200, 30, 30)).save(tmp_path / "photo.png")
    arguments = ["--checkpoint", str(tmp_path / "model"), "--image", str(tmp_path / "photo.png")]
    assert example.main([*arguments, "--output-dir", str(tmp_path / "out")]) == 0
    for name in EXAMPLE_PICTURES:
        _png_size(tmp_path / "out" / name)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--digit", "355"], r"--digit must be from 0 to 354, got 355"),
        (["--num-images", "0"], r"--num-images must be from 1 to 355, got 0"),
        (["--discard-ratio", "1"], r"--discard-ratio must be in \[0, 1\), got 1.0"),
    ],
)
def test_the_example_refuses_options_out_of_range(
    option: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_module(ROOT / "examples" / "inspect_model.py")
    with pytest.raises(SystemExit):
        example.parse_args(option)
    assert re.search(message, capsys.readouterr().err)
