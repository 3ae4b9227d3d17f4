"""The paper's optimisation recipe: parameter groups, optimisers, warmup + decay, TrainConfig."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vitlib
from tests.training_helpers import TokenNet, tiny_net
from vitlib import ConfigError
from vitlib.training import (
    TrainConfig,
    build_optimizer,
    build_scheduler,
    lr_factor,
    parameter_groups,
)


def group_names(model: torch.nn.Module, groups: list[dict[str, object]]) -> list[set[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [{names[id(p)] for p in group["params"]} for group in groups]  # type: ignore[attr-defined]


def test_weight_decay_skips_biases_norms_and_the_names_the_model_lists() -> None:
    model = TokenNet()
    groups = parameter_groups(model, 0.3)
    decayed, undecayed = group_names(model, groups)
    assert [g["weight_decay"] for g in groups] == [0.3, 0.0]
    assert decayed == {"hidden.weight", "head.weight"}
    assert undecayed == {
        "class_embedding",
        "hidden.bias",
        "norm.weight",
        "norm.bias",
        "head.bias",
    }


def test_vit_decays_exactly_its_weight_matrices() -> None:
    model = vitlib.ViT(
        img_size=16,
        in_channels=1,
        patch_size=4,
        num_transformer_layers=2,
        embedding_dim=32,
        mlp_size=64,
        num_heads=2,
        num_classes=10,
    )
    decayed, undecayed = group_names(model, parameter_groups(model, 0.1))
    params = dict(model.named_parameters())
    assert {"class_embedding", "position_embedding"} <= undecayed
    assert all(params[n].ndim >= 2 for n in decayed)
    assert all(params[n].ndim <= 1 or n in model.no_weight_decay() for n in undecayed)
    assert "head.weight" in decayed
    assert decayed | undecayed == set(params)


def test_frozen_parameters_are_left_out() -> None:
    model = tiny_net()
    model.hidden.requires_grad_(False)
    decayed, undecayed = group_names(model, parameter_groups(model, 0.1))
    assert not {"hidden.weight", "hidden.bias"} & (decayed | undecayed)


def test_a_fully_frozen_model_is_refused() -> None:
    model = tiny_net().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        parameter_groups(model, 0.1)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)],
)
def test_optimisers_use_the_papers_betas_and_the_groups(name: str, kind: type) -> None:
    optimizer = build_optimizer(tiny_net(), TrainConfig(optimizer=name, lr=3e-3, weight_decay=0.2))
    assert type(optimizer) is kind
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.2, 0.0]
    assert all(g["lr"] == 3e-3 for g in optimizer.param_groups)
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.9
    else:
        assert optimizer.param_groups[0]["betas"] == (0.9, 0.999)


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_adam_runs_the_fused_kernel_and_steps_as_the_default_one(name: str) -> None:
    model = tiny_net()
    config = TrainConfig(optimizer=name, lr=1e-2, weight_decay=0.2)
    fused = build_optimizer(model, config)
    assert all(group["fused"] for group in fused.param_groups)
    twin = tiny_net()
    twin.load_state_dict(model.state_dict())
    kind = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    default = kind(parameter_groups(twin, 0.2), lr=1e-2, betas=(0.9, 0.999))
    for step in range(3):
        for net, optimizer in ((model, fused), (twin, default)):
            torch.manual_seed(step)
            optimizer.zero_grad()
            net(torch.randn(4, 3, 8, 8)).square().mean().backward()
            optimizer.step()
    for got, want in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_adam_falls_back_to_the_default_kernel_off_cpu_and_cuda() -> None:
    with torch.device("meta"):
        model = tiny_net()
    optimizer = build_optimizer(model, TrainConfig())
    assert not any(group["fused"] for group in optimizer.param_groups)


def test_warmup_rises_linearly_then_cosine_decays_to_the_floor() -> None:
    factors = [
        lr_factor(s, warmup_steps=4, total_steps=14, schedule="cosine", min_lr_ratio=0.1)
        for s in range(16)
    ]
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factors[9] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert factors[14] == factors[15] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))


def test_linear_and_constant_schedules() -> None:
    linear = [lr_factor(s, warmup_steps=0, total_steps=10, schedule="linear") for s in range(11)]
    assert linear == pytest.approx([1 - s / 10 for s in range(11)])
    constant = [lr_factor(s, warmup_steps=2, total_steps=10, schedule="constant") for s in range(6)]
    assert constant == pytest.approx([1 / 3, 2 / 3, 1, 1, 1, 1])


@given(
    warmup=st.integers(0, 50),
    extra=st.integers(1, 200),
    schedule=st.sampled_from(["cosine", "linear", "constant"]),
    floor=st.floats(0.0, 1.0),
)
def test_every_factor_lies_between_the_floor_and_one(
    warmup: int, extra: int, schedule: str, floor: float
) -> None:
    total = warmup + extra
    for step in range(total + 3):
        factor = lr_factor(
            step, warmup_steps=warmup, total_steps=total, schedule=schedule, min_lr_ratio=floor
        )
        assert 0.0 <= factor <= 1.0 + 1e-12
        if step < total:
            assert factor > 0.0  # every step before the end learns
        if step >= warmup:
            assert factor >= floor - 1e-12


def test_the_scheduler_sets_the_learning_rate_of_every_step() -> None:
    model = tiny_net()
    optimizer = build_optimizer(model, TrainConfig(lr=1.0))
    scheduler = build_scheduler(optimizer, schedule="cosine", warmup_steps=2, total_steps=6)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [lr_factor(s, warmup_steps=2, total_steps=6, schedule="cosine") for s in range(6)]
    assert seen == pytest.approx(expected)
    assert all(g["lr"] == optimizer.param_groups[0]["lr"] for g in optimizer.param_groups)


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("optimizer", "AdamW", "got 'AdamW' \\(did you mean 'adamw'"),
        ("optimizer", "lamb", "must be one of 'adamw', 'adam', 'sgd', got 'lamb'"),
        ("schedule", "cosin", "got 'cosin' \\(did you mean 'cosine'"),
        ("schedule", "step", "must be one of 'cosine', 'linear', 'constant', got 'step'"),
    ],
)
def test_unknown_names_are_refused_with_the_valid_ones(field: str, value: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=rf"{field} {hint}" if "must" in hint else hint):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_unknown_schedule_in_the_functional_api() -> None:
    with pytest.raises(ValueError, match="did you mean 'linear'"):
        lr_factor(0, warmup_steps=0, total_steps=10, schedule="lineer")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", 0.0),
        ("lr", -1e-3),
        ("lr", math.nan),
        ("lr", math.inf),
        ("weight_decay", -0.1),
        ("betas", (0.9, 1.0)),
        ("betas", (0.9,)),
        ("warmup_steps", -1),
        ("warmup_steps", 1.5),
        ("grad_clip_norm", 0.0),
        ("accumulation_steps", 0),
        ("label_smoothing", 1.0),
        ("min_lr_ratio", 1.5),
        ("max_steps", 0),
        ("amp_dtype", torch.float16),
    ],
)
def test_out_of_range_settings_name_the_value_given(field: str, value: object) -> None:
    with pytest.raises(
        vitlib.VitlibError, match=rf"^(each of )?{field} must be .*, got "
    ) as caught:
        TrainConfig(**{field: value})  # type: ignore[arg-type]
    wrong_type = isinstance(value, float) and field in ("warmup_steps",)
    assert isinstance(caught.value, TypeError if wrong_type else ValueError)


def test_the_config_round_trips_through_a_plain_dict() -> None:
    config = TrainConfig(lr=5e-4, betas=(0.8, 0.99), amp_dtype=torch.bfloat16, max_steps=7)
    data = config.to_dict()
    assert data["amp_dtype"] == "bfloat16"
    assert data["betas"] == [0.8, 0.99]
    assert TrainConfig.from_dict(data) == config
    with pytest.raises(TypeError, match="did you mean 'lr'"):
        TrainConfig.from_dict({"lrr": 1e-3})


@given(warmup=st.integers(0, 500), total=st.integers(2, 300))
def test_warmup_never_takes_more_than_half_the_run_so_the_rate_also_decays(
    warmup: int, total: int
) -> None:
    factors = [
        lr_factor(step, warmup_steps=warmup, total_steps=total, schedule="cosine")
        for step in range(total + 1)  # the factor after the last step ends the decay
    ]
    peak = factors.index(max(factors))
    assert peak <= total // 2
    assert factors[-1] < factors[peak]


def test_a_warmup_longer_than_the_run_is_shortened_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    optimizer = build_optimizer(tiny_net(), TrainConfig(lr=1.0))
    with caplog.at_level("WARNING", logger="vitlib.training"):
        build_scheduler(optimizer, schedule="cosine", warmup_steps=50, total_steps=20)
    assert "warmup_steps=50 (--warmup-steps) is more than half of this 20-step run" in caplog.text
    assert "warming up for 10 steps" in caplog.text


def test_the_warmup_line_is_written_once_under_torchrun_by_rank_0(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vitlib.training import DistributedContext

    monkeypatch.setattr(
        "vitlib.training.optim.current_context", lambda: DistributedContext(rank=1, world_size=2)
    )
    optimizer = build_optimizer(tiny_net(), TrainConfig(lr=1.0))
    with caplog.at_level("WARNING", logger="vitlib.training"):
        build_scheduler(optimizer, schedule="cosine", warmup_steps=50, total_steps=20)
    assert "more than half" not in caplog.text
