"""train_one_epoch and evaluate: exact per-sample metrics, accumulation, bf16, errors."""

from __future__ import annotations

import copy
import logging
import sys
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from tests.training_helpers import (
    TinyNet,
    blobs,
    digits_loaders,
    digits_vit,
    output_dtypes,
    states_equal,
    tiny_net,
)
from vitlib.errors import ConfigError, DataError
from vitlib.training import (
    NonFiniteLossError,
    TrainingConfigError,
    engine,
    evaluate,
    train_one_epoch,
)
from vitlib.training.errors import NonFiniteEvalLossError


def test_metrics_are_the_exact_per_sample_mean_with_a_ragged_last_batch() -> None:
    data = blobs(10)  # batches of 4, 4 and 2
    model = tiny_net()
    loader = DataLoader(data, batch_size=4)
    inputs, labels = data.tensors
    with torch.no_grad():
        logits = model(inputs)
        expected_loss = F.cross_entropy(logits, labels).item()
        expected_acc = (logits.argmax(1) == labels).float().mean().item()
        per_batch_means = [
            F.cross_entropy(model(x), y).item() for x, y in DataLoader(data, batch_size=4)
        ]
    assert sum(per_batch_means) / 3 != pytest.approx(expected_loss, rel=1e-6)

    result = evaluate(model, loader)
    assert result.samples == 10
    assert result.loss == pytest.approx(expected_loss, rel=1e-6)
    assert result.accuracy == pytest.approx(expected_acc)

    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # weights stay put, so the loss is known
    epoch = train_one_epoch(model, loader, frozen, progress=False)
    assert (epoch.samples, epoch.steps) == (10, 3)
    assert epoch.loss == pytest.approx(expected_loss, rel=1e-6)
    assert epoch.accuracy == pytest.approx(expected_acc)


@pytest.mark.parametrize(("samples", "micro_batch", "steps"), [(12, 4, 3), (10, 4, 3)])
def test_accumulating_k_micro_batches_equals_one_big_batch(
    samples: int, micro_batch: int, steps: int
) -> None:
    data = blobs(samples)
    big = tiny_net().double()
    small = copy.deepcopy(big)
    data = TensorDataset(data.tensors[0].double(), data.tensors[1])
    for model, batch_size, accumulation in ((big, samples, 1), (small, micro_batch, steps)):
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
        result = train_one_epoch(
            model,
            DataLoader(data, batch_size=batch_size),
            optimizer,
            accumulation_steps=accumulation,
            grad_clip_norm=0.5,
            progress=False,
        )
        assert result.steps == 1
    for name, value in big.state_dict().items():
        torch.testing.assert_close(small.state_dict()[name], value, rtol=1e-10, atol=1e-12)


def test_accumulated_sgd_gradients_are_the_mean_over_all_samples_of_the_step() -> None:
    """Plain SGD, no clipping: the step is -lr times the gradient of the mean loss over the 10
    samples of the group, whatever the micro-batch sizes (4, 4 and a ragged 2)."""
    data = blobs(10)
    data = TensorDataset(data.tensors[0].double(), data.tensors[1])
    model = tiny_net().double()
    before = copy.deepcopy(model)
    inputs, labels = data.tensors
    parameters = dict(before.named_parameters())
    gradients = torch.autograd.grad(
        F.cross_entropy(before(inputs), labels), list(parameters.values())
    )
    expected = {
        name: p - 0.5 * grad for (name, p), grad in zip(parameters.items(), gradients, strict=True)
    }
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(data, batch_size=4)
    result = train_one_epoch(
        model, loader, optimizer, accumulation_steps=3, grad_clip_norm=None, progress=False
    )
    assert result.steps == 1
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, expected[name], rtol=1e-12, atol=1e-12)


def test_a_ragged_accumulation_group_still_steps() -> None:
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(blobs(20), batch_size=4)  # 5 micro-batches, groups of 2: 2 + 2 + 1
    assert (
        train_one_epoch(model, loader, optimizer, accumulation_steps=2, progress=False).steps == 3
    )


def test_a_nan_loss_stops_training_naming_the_epoch_and_global_step() -> None:
    inputs, labels = blobs(12).tensors
    inputs = inputs.clone()
    inputs[9] = float("nan")  # in the fifth batch of two: global step 4
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=2)
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, global step 14") as caught:
        train_one_epoch(model, loader, optimizer, epoch=3, step_offset=10, progress=False)
    assert caught.value.global_step == 14
    assert isinstance(caught.value, RuntimeError)
    assert "nan" in str(caught.value)


class _CountingSGD(torch.optim.SGD):
    """SGD that counts its steps."""

    steps = 0

    def step(self, closure: Any = None) -> Any:
        self.steps += 1
        return super().step(closure)


def test_a_nan_loss_stops_training_before_its_optimizer_step() -> None:
    # On the CPU each loss is checked at once (CUDA reads the flag one batch later, at most one
    # step late); either way the error names the NaN batch.
    inputs, labels = blobs(12).tensors
    inputs = inputs.clone()
    inputs[9] = float("nan")  # batch 4 of six batches of two
    model = tiny_net()
    optimizer = _CountingSGD(model.parameters(), lr=0.01)
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=2)
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, global step 14 \(batch 4 "):
        train_one_epoch(model, loader, optimizer, epoch=3, step_offset=10, progress=False)
    assert optimizer.steps == 4


def test_a_nan_loss_in_the_last_batch_is_caught() -> None:
    inputs, labels = blobs(6).tensors
    inputs = inputs.clone()
    inputs[5] = float("inf")
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=2)
    model = tiny_net()
    with pytest.raises(NonFiniteLossError, match=r"global step 2 \(batch 2 "):
        train_one_epoch(model, loader, torch.optim.SGD(model.parameters()), progress=False)
    with pytest.raises(NonFiniteEvalLossError, match="batch 2"):
        evaluate(tiny_net(), loader)  # a fresh one: the NaN batch's step has been taken


def test_metrics_stay_on_the_device_until_the_end_of_the_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    original = engine._Tally.read

    def counting_read(self: engine._Tally) -> tuple[float, int]:
        reads.append(self.samples)
        return original(self)

    monkeypatch.setattr(engine._Tally, "read", counting_read)
    model = tiny_net()
    loader = DataLoader(blobs(40), batch_size=4)  # ten batches
    result = train_one_epoch(model, loader, torch.optim.SGD(model.parameters()), progress=False)
    assert reads == [40]
    assert result.samples == 40
    reads.clear()
    evaluate(model, loader)
    assert reads == [40]


@pytest.mark.parametrize("accumulation_steps", [0, -2])
def test_accumulation_steps_below_one_are_refused(accumulation_steps: int) -> None:
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(
        ConfigError, match=rf"accumulation_steps must be an int >= 1, got {accumulation_steps}"
    ):
        train_one_epoch(
            model,
            DataLoader(blobs(4)),
            optimizer,
            accumulation_steps=accumulation_steps,
        )


def test_bfloat16_autocast_trains_and_evaluates() -> None:
    model = tiny_net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loader = DataLoader(blobs(24), batch_size=8)  # 3 batches
    with output_dtypes(model.hidden) as full_precision:
        before = evaluate(model, loader).loss
    with output_dtypes(model.hidden) as trained:
        for _ in range(5):
            train_one_epoch(model, loader, optimizer, amp_dtype=torch.bfloat16, progress=False)
    with output_dtypes(model.hidden) as evaluated:
        after = evaluate(model, loader, amp_dtype=torch.bfloat16)
    assert full_precision == [torch.float32] * 3
    assert trained == [torch.bfloat16] * 15  # autocast was on for every training batch
    assert evaluated == [torch.bfloat16] * 3
    assert after.loss < before
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_float16_autocast_is_refused_with_the_fix() -> None:
    model = tiny_net()
    with pytest.raises(
        ValueError, match=r"amp_dtype must be torch.bfloat16 or None, got .*float16"
    ):
        evaluate(model, DataLoader(blobs(4)), amp_dtype=torch.float16)


def test_evaluate_restores_the_mode_and_touches_no_gradient() -> None:
    model = TinyNet(dropout=0.5)
    reference = copy.deepcopy(model)
    first = evaluate(model, DataLoader(blobs(9), batch_size=4))
    again = evaluate(model, DataLoader(blobs(9), batch_size=4))
    was_training = model.training
    assert evaluate(model.eval(), DataLoader(blobs(9), batch_size=4)) == first
    assert was_training
    assert not model.training
    assert first == again  # dropout is off, so evaluation is deterministic
    assert states_equal(model, reference)
    assert all(p.grad is None for p in model.parameters())


def test_a_loader_of_non_pairs_is_refused() -> None:
    with pytest.raises(TypeError, match=r"expected \(images, labels\) pairs"):
        evaluate(tiny_net(), [torch.zeros(2, 8)])


def test_an_empty_loader_is_refused() -> None:
    with pytest.raises(ValueError, match="yielded no samples"):
        evaluate(tiny_net(), [])


def test_without_tqdm_progress_is_logged_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with caplog.at_level(logging.INFO, logger="vitlib.training"):
        train_one_epoch(model, DataLoader(blobs(40), batch_size=4), optimizer, epoch=2)
    assert not [r for r in caplog.records if r.getMessage().startswith("epoch 2 train")], (
        "per-batch lines are DEBUG: a redirected log gets one line an epoch"
    )
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="vitlib.training"):
        train_one_epoch(model, DataLoader(blobs(40), batch_size=4), optimizer, epoch=2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 2 train")]
    assert lines
    assert lines[-1].startswith("epoch 2 train 10/10 loss=")


def _loader(labels: torch.Tensor, batch_size: int = 4) -> DataLoader[tuple[torch.Tensor, ...]]:
    inputs = blobs(len(labels)).tensors[0]
    return DataLoader(TensorDataset(inputs, labels), batch_size=batch_size)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            torch.tensor([0, 1, 2, 5, 0, 1]),
            r"the model outputs 3 classes but the training loader yielded label 5 in batch 0 of "
            r"epoch 2; expected int64 class indices in \[0, 3\)\. Build the model with "
            r"num_classes=6",
        ),
        (
            torch.tensor([0, 1, 2, 1, 0, 3]),
            r"the model outputs 3 classes but the training loader yielded label 3 in batch 1 of "
            r"epoch 2; expected int64 class indices in \[0, 3\)",
        ),
        (
            torch.tensor([0, 1, 2, 1, 0, -1]),
            r"yielded label -1 in batch 1 of epoch 2; expected int64 class indices in \[0, 3\)",
        ),
        (
            torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0, 1.0]),
            r"yielded labels of dtype torch.float32 in batch 0 of epoch 2; expected int64 class "
            r"indices .*labels.long\(\)",
        ),
        (
            torch.tensor([True, False, True, True, False, True]),
            r"labels of dtype torch.bool",
        ),
    ],
    ids=["too-large", "num-classes", "negative", "float", "bool"],
)
def test_labels_that_do_not_index_the_outputs_are_refused_before_the_step(
    labels: torch.Tensor, message: str
) -> None:
    model = tiny_net()
    before = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    # the bad batch is the first optimiser step: nothing may have moved
    with pytest.raises(DataError, match=message):
        train_one_epoch(
            model, _loader(labels), optimizer, accumulation_steps=2, epoch=2, progress=False
        )
    assert states_equal(model, before)
    with pytest.raises(DataError, match=message.replace("training", "evaluation").split(" in ")[0]):
        evaluate(model, _loader(labels))


def test_labels_of_another_integer_dtype_are_class_indices_too() -> None:
    labels = blobs(8).tensors[1]
    expected = evaluate(tiny_net(), _loader(labels))
    assert evaluate(tiny_net(), _loader(labels.to(torch.int32))) == expected
    assert evaluate(tiny_net(), _loader(labels.to(torch.uint8))) == expected


def test_outputs_that_are_not_one_row_of_logits_per_image_are_refused() -> None:
    flat = torch.nn.Sequential(tiny_net(), torch.nn.Flatten(0))  # (batch * classes,)
    with pytest.raises(DataError, match=r"outputs of shape \(12,\) for labels of shape \(4,\)"):
        evaluate(flat, _loader(blobs(4).tensors[1]))


def test_a_vit_without_a_head_is_refused() -> None:
    features = digits_vit(num_classes=0)
    train_loader, test_loader = digits_loaders()
    optimizer = torch.optim.SGD(features.parameters(), lr=0.1)
    with pytest.raises(TrainingConfigError, match=r"no classification head \(num_classes=0\)"):
        train_one_epoch(features, train_loader, optimizer, progress=False)
    with pytest.raises(TrainingConfigError, match="16-d features"):
        evaluate(features, test_loader)


def test_a_non_finite_evaluation_loss_names_the_batch() -> None:
    inputs, labels = blobs(12).tensors
    inputs = inputs.clone()
    inputs[9] = float("inf")  # the third batch of four
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=4)
    with pytest.raises(NonFiniteEvalLossError, match=r"became nan in evaluation batch 2;") as err:
        evaluate(tiny_net(), loader)
    assert err.value.batch_index == 2
    assert err.value.epoch is None
    assert isinstance(err.value, RuntimeError)
    with pytest.raises(NonFiniteEvalLossError, match=r"evaluation batch 2 after epoch 4"):
        evaluate(tiny_net(), loader, epoch=4)
