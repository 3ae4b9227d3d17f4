"""FSDP2 sharding under torchrun (2 CPU processes, gloo): the same training as DDP, checkpoints a
single process loads, exact resumes with the same or another number of processes."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import vitlib
from vitlib.checkpoints.run_folder import LAST
from vitlib.cli import main
from vitlib.errors import ConfigError, InputTypeError
from vitlib.training import TrainingConfigError, build_optimizer, fit
from vitlib.training.config import TrainConfig
from vitlib.training.fsdp import encoder_blocks, load_optimizer_state
from vitlib.training.resume import load_training_state

from .helpers import ROOT, load_module
from .test_training_ddp import torchrun
from .training_helpers import FINISHED_COMMAND_RUN

MODEL: dict[str, Any] = {
    "img_size": 8,
    "in_channels": 3,
    "patch_size": 4,
    "num_transformer_layers": 2,
    "embedding_dim": 16,
    "mlp_size": 32,
    "num_heads": 2,
    "num_classes": 2,
    "mlp_dropout": 0.0,
    "embedding_dropout": 0.0,
}
RECIPE: dict[str, Any] = {"lr": 0.01, "warmup_steps": 1, "accumulation_steps": 2}
EPOCHS = 3

WORKER = textwrap.dedent(
    f"""
    import json
    import sys
    from pathlib import Path

    import safetensors.torch
    import torch
    from torch.utils.data import TensorDataset

    import vitlib
    import vitlib.training.resume as resume_module
    from vitlib.data import make_dataloaders
    from vitlib.training import distributed_session, fit, seed_everything
    from vitlib.training.fsdp import full_model_state

    MODEL, RECIPE, EPOCHS = {MODEL!r}, {RECIPE!r}, {EPOCHS}
    out = Path(sys.argv[1])
    with distributed_session() as context:
        save_checkpoint, write_json = resume_module.save_checkpoint, resume_module.write_run_json

        def recording(write, what):
            def recorded(*args, **kwargs):
                (out / f"{{what}}_by_rank{{context.rank}}").touch()
                write(*args, **kwargs)
            return recorded

        resume_module.save_checkpoint = recording(save_checkpoint, "saved")
        resume_module.write_run_json = recording(write_json, "json")
        inputs = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        labels = (inputs[:, 0].mean(dim=(1, 2)) > 0).long()
        train_loader, test_loader = make_dataloaders(
            TensorDataset(inputs, labels), TensorDataset(inputs[:12], labels[:12]), 4,
            distributed=True,
        )

        def new_model():
            seed_everything(0)
            model = vitlib.ViT(**MODEL)
            vitlib.checkpoints.attach_metadata(model, labels=["dark", "bright"])
            return model

        def train(name, model, **options):
            history = fit(
                model, train_loader, test_loader, progress=False, seed=0,
                **{{"epochs": EPOCHS, **RECIPE, **options}},
            )
            weights = full_model_state(model) if name != "ddp" else model.state_dict()
            if context.is_main:
                tensors = {{k: v.contiguous() for k, v in weights.items()}}
                safetensors.torch.save_file(tensors, str(out / f"{{name}}.safetensors"))
            return history.as_dict()

        report = {{"world_size": context.world_size}}
        report["ddp"] = train("ddp", new_model())
        fsdp_model = new_model()
        report["fsdp"] = train(
            "fsdp", fsdp_model, parallel="fsdp", grad_checkpointing=True, output_dir=out / "fsdp"
        )
        with torch.no_grad():
            report["logits"] = fsdp_model.eval()(inputs[:5]).tolist()
        class Interrupted(Exception):
            pass

        def interrupt(epoch, history):
            raise Interrupted

        try:
            fit(
                new_model(), train_loader, test_loader, progress=False, seed=0, epochs=EPOCHS,
                parallel="fsdp", output_dir=out / "resumed", on_epoch_end=interrupt, **RECIPE,
            )
        except Interrupted:
            torch.distributed.barrier()  # a restarted job starts after rank 0 has saved
        report["resumed"] = train(
            "resumed", vitlib.ViT(**MODEL), parallel="fsdp", output_dir=out / "resumed",
            resume=True,
        )
        flipped = make_dataloaders(  # validation falls as it learns: epoch 1 is the best
            TensorDataset(inputs, labels), TensorDataset(inputs[:12], 1 - labels[:12]), 4,
            distributed=True,
        )[1]

        def tested(model, **options):
            history = fit(
                model, train_loader, flipped, test_loader=test_loader, progress=False, seed=0,
                **{{"epochs": EPOCHS, **RECIPE, **options}},
            )
            return history.as_dict()

        def interrupt_after_2(epoch, history):
            if epoch == 2:
                raise Interrupted

        report["tested_ddp"] = tested(new_model())
        report["tested_fsdp"] = tested(new_model(), parallel="fsdp")
        try:
            tested(
                new_model(), parallel="fsdp", output_dir=out / "tested",
                on_epoch_end=interrupt_after_2,
            )
        except Interrupted:
            torch.distributed.barrier()
        report["tested_resumed"] = tested(
            vitlib.ViT(**MODEL), parallel="fsdp", output_dir=out / "tested", resume=True
        )
        bf16 = new_model()
        seen = []
        linear = next(
            m for m in bf16.transformer_encoder[0].modules() if isinstance(m, torch.nn.Linear)
        )
        linear.register_forward_pre_hook(lambda module, args: seen.append(str(module.weight.dtype)))
        report["bf16"] = train(
            "bf16", bf16, parallel="fsdp", amp_dtype=torch.bfloat16, epochs=1
        )
        report["bf16_dtype"] = sorted(set(seen))
        (out / f"rank{{context.rank}}.json").write_text(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One torchrun launch (2 processes) trains every variant the tests below compare."""
    out = tmp_path_factory.mktemp("fsdp")
    script = out / "worker.py"
    script.write_text(WORKER)
    result = torchrun(str(script), str(out), cwd=out)
    failures = [line for line in result.stderr.splitlines() if line.startswith("[rank")]
    assert result.returncode == 0, "\n".join(failures[-30:]) or result.stderr[-4000:]
    return out


def _report(out: Path, rank: int = 0) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((out / f"rank{rank}.json").read_text())
    return report


def _weights(out: Path, name: str) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(out / f"{name}.safetensors"))


def _assert_close(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5, msg=name)


@pytest.mark.slow
def test_fsdp_trains_like_ddp(sharded_runs: Path) -> None:
    """Sharded (with gradient checkpointing and accumulation) or replicated: the same losses and
    weights to 1e-5, on both ranks."""
    reports = [_report(sharded_runs, rank) for rank in (0, 1)]
    assert [report["world_size"] for report in reports] == [2, 2]
    assert reports[0]["fsdp"] == reports[1]["fsdp"]
    ddp, fsdp = reports[0]["ddp"], reports[0]["fsdp"]
    for metric in ("train_loss", "val_loss", "lr"):
        assert fsdp[metric] == pytest.approx(ddp[metric], abs=1e-5), metric
    assert fsdp["train_loss"][0] != pytest.approx(fsdp["train_loss"][-1], abs=1e-3)  # it learns
    _assert_close(_weights(sharded_runs, "fsdp"), _weights(sharded_runs, "ddp"))


@pytest.mark.slow
def test_the_final_test_of_a_sharded_run_is_that_of_its_best_epoch_as_unsharded(
    sharded_runs: Path,
) -> None:
    """The best epoch's weights, gathered, are put back into the shards for the one test (also
    when they come from a resumed run's best/), and the model ends with its last weights."""
    reports = [_report(sharded_runs, rank) for rank in (0, 1)]
    assert reports[0]["tested_fsdp"] == reports[1]["tested_fsdp"]
    ddp, fsdp = reports[0]["tested_ddp"], reports[0]["tested_fsdp"]
    assert fsdp["test"]["epoch"] == ddp["test"]["epoch"] == 1 < EPOCHS
    for metric in ("loss", "acc"):
        assert fsdp["test"][metric] == pytest.approx(ddp["test"][metric], abs=1e-5), metric
    assert reports[0]["tested_resumed"] == fsdp
    saved = json.loads((sharded_runs / "tested" / "history.json").read_text())
    assert saved["test"] == fsdp["test"]


@pytest.mark.slow
def test_only_rank_0_writes_and_the_run_has_the_usual_files(sharded_runs: Path) -> None:
    assert sorted(p.name for p in sharded_runs.glob("*_by_rank*")) == [
        "json_by_rank0",
        "saved_by_rank0",
    ]
    run = sharded_runs / "fsdp"
    assert sorted(p.name for p in run.iterdir()) == ["best", "history.json", "last"]
    assert sorted(p.name for p in (run / LAST).iterdir()) == [
        "config.json",
        "model.safetensors",
        "training_state.pt",
    ]


@pytest.mark.slow
def test_a_sharded_checkpoint_loads_in_one_process_with_the_same_logits(
    sharded_runs: Path,
) -> None:
    model = vitlib.load_pretrained(sharded_runs / "fsdp" / LAST).eval()
    assert vitlib.checkpoints.model_metadata(model).labels == ("dark", "bright")
    _assert_close(model.state_dict(), _weights(sharded_runs, "fsdp"))
    inputs = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(inputs[:5])
    expected = torch.tensor(_report(sharded_runs)["logits"])
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_an_interrupted_sharded_run_resumes_to_the_same_weights(sharded_runs: Path) -> None:
    report = _report(sharded_runs)
    assert report["resumed"] == report["fsdp"]
    _assert_close(_weights(sharded_runs, "resumed"), _weights(sharded_runs, "fsdp"))


@pytest.mark.slow
def test_a_sharded_run_resumes_in_one_process_with_its_optimiser_state(
    sharded_runs: Path, tmp_path: Path
) -> None:
    """The gathered optimiser state (keyed by name) loads into an unsharded optimiser exactly,
    and ``fit`` continues the run in a single process."""
    run = tmp_path / "run"
    shutil.copytree(sharded_runs / "fsdp", run)
    saved = load_training_state(run / LAST)["optimizer"]
    model = vitlib.load_pretrained(run / LAST)
    optimizer = build_optimizer(model, TrainConfig(**RECIPE))
    load_optimizer_state(model, optimizer, saved)
    names = dict(model.named_parameters())
    for name, state in saved["state"].items():
        loaded = optimizer.state[names[name]]
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0)
    inputs = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = (inputs[:, 0].mean(dim=(1, 2)) > 0).long()
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=4)
    history = fit(
        vitlib.ViT(**MODEL),
        loader,
        loader,
        epochs=EPOCHS + 1,
        output_dir=run,
        resume=True,
        progress=False,
        **RECIPE,
    )
    assert len(history) == EPOCHS + 1
    assert history.as_dict()["train_loss"][:EPOCHS] == _report(sharded_runs)["fsdp"]["train_loss"]


THREE_RANKS = textwrap.dedent(
    f"""
    import json
    import sys
    from pathlib import Path

    import torch
    from torch.utils.data import TensorDataset

    import vitlib
    from vitlib.data import make_dataloaders
    from vitlib.training import distributed_session, fit

    MODEL, RECIPE, EPOCHS = {MODEL!r}, {RECIPE!r}, {EPOCHS}
    run = Path(sys.argv[1])
    with distributed_session() as context:
        inputs = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        labels = (inputs[:, 0].mean(dim=(1, 2)) > 0).long()
        train_loader, test_loader = make_dataloaders(
            TensorDataset(inputs, labels), TensorDataset(inputs[:12], labels[:12]), 4,
            distributed=True,
        )
        history = fit(
            vitlib.ViT(**MODEL), train_loader, test_loader, progress=False, seed=0,
            epochs=EPOCHS + 1, parallel="fsdp", output_dir=run, resume=True, **RECIPE,
        )
        report = {{"world_size": context.world_size, "history": history.as_dict()}}
        (run / f"three_rank{{context.rank}}.json").write_text(json.dumps(report))
    """
)


@pytest.mark.slow
def test_a_two_process_sharded_run_resumes_sharded_over_three(
    sharded_runs: Path, tmp_path: Path
) -> None:
    """The name-keyed optimiser state and the gathered weights reshard over another number of
    processes: three continue for one more epoch what two trained."""
    run = tmp_path / "run"
    shutil.copytree(sharded_runs / "fsdp", run)
    before = _weights(sharded_runs, "fsdp")
    script = tmp_path / "three.py"
    script.write_text(THREE_RANKS)
    result = torchrun(str(script), str(run), cwd=tmp_path, processes=3)
    assert result.returncode == 0, result.stderr[-4000:]
    reports = [json.loads((run / f"three_rank{rank}.json").read_text()) for rank in range(3)]
    assert [r["world_size"] for r in reports] == [3, 3, 3]
    history = reports[0]["history"]
    assert len(history["train_loss"]) == EPOCHS + 1
    assert history["train_loss"][:EPOCHS] == _report(sharded_runs)["fsdp"]["train_loss"]
    continued = vitlib.load_pretrained(run / LAST).state_dict()
    assert any(not torch.equal(continued[k], before[k]) for k in before)


@pytest.mark.slow
def test_bf16_mixed_precision_gathers_bf16_parameters(sharded_runs: Path) -> None:
    report = _report(sharded_runs)
    assert report["bf16_dtype"] == ["torch.bfloat16"]
    losses = report["bf16"]["train_loss"] + report["bf16"]["val_loss"]
    assert all(loss == loss and abs(loss) < 10 for loss in losses)  # finite, no blow-up
    assert all(t.dtype == torch.float32 for t in _weights(sharded_runs, "bf16").values())


def test_an_unsharded_optimiser_state_loads_by_name() -> None:
    """A run saved without sharding (keyed by parameter index) resumes under FSDP: its state is
    re-keyed by name first, which must give back the same state."""
    from vitlib.training.fsdp import _keyed_by_name

    model = vitlib.ViT(**MODEL)
    optimizer = build_optimizer(model, TrainConfig())
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    by_name = _keyed_by_name(model, optimizer, optimizer.state_dict())
    assert set(by_name["state"]) == {name for name, _ in model.named_parameters()}
    fresh = build_optimizer(model, TrainConfig())
    load_optimizer_state(model, fresh, by_name)
    for parameter in model.parameters():
        torch.testing.assert_close(
            fresh.state[parameter]["exp_avg"], optimizer.state[parameter]["exp_avg"]
        )


def _loader() -> DataLoader[Any]:
    inputs = torch.randn(8, 3, 8, 8)
    return DataLoader(TensorDataset(inputs, torch.zeros(8, dtype=torch.long)), batch_size=4)


def test_fit_refuses_an_unknown_parallel_mode_with_a_suggestion(tmp_path: Path) -> None:
    expected = r"parallel must be one of 'ddp', 'fsdp', got 'fsdpp' \(did you mean 'fsdp'\?\)"
    with pytest.raises(ConfigError, match=expected):
        fit(vitlib.ViT(**MODEL), _loader(), _loader(), epochs=1, parallel="fsdpp")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=r"parallel must be one of 'ddp', 'fsdp', got None"):
        fit(vitlib.ViT(**MODEL), _loader(), _loader(), epochs=1, parallel=None)  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_documented_fsdp_command_ends_cleanly_with_its_plots(tmp_path: Path) -> None:
    """docs/cli.md's FSDP launch of ``vitlib train``: rank 0 draws the plots from the saved full
    weights (a sharded model could only run with every rank taking part)."""
    pytest.importorskip("matplotlib")
    command = [
        "-m", "vitlib", "train", "--parallel", "fsdp", "--epochs", "2", "--layers", "1",
        "--batch-size", "64", "--max-steps", "4", "--no-progress", "--seed", "3",
        "--output-dir", str(tmp_path / "runs" / "fsdp"),
    ]  # fmt: skip
    result = torchrun(*command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "runs" / "fsdp"
    assert sorted(p.name for p in run.iterdir()) == FINISHED_COMMAND_RUN
    assert result.stdout.count("final test accuracy") == 1  # rank 0 alone reports
    assert "Traceback" not in result.stderr
    again = torchrun(*command, "--resume", cwd=tmp_path)  # complete: sharded, not trained
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.count("is already complete: it took its max_steps=4") == 1
    assert "epoch 1/2" not in again.stdout


def test_fit_refuses_fsdp_in_a_single_process_before_touching_the_run(tmp_path: Path) -> None:
    (tmp_path / "history.json").write_text("{}")
    with pytest.raises(TrainingConfigError, match=r"none is joined.*torchrun"):
        fit(
            vitlib.ViT(**MODEL),
            _loader(),
            _loader(),
            epochs=1,
            parallel="fsdp",
            output_dir=tmp_path,
            overwrite=True,
        )
    assert (tmp_path / "history.json").read_text() == "{}"


def test_fsdp_refuses_a_model_without_encoder_blocks() -> None:
    with pytest.raises(TrainingConfigError, match=r"Sequential.*no vitlib TransformerEncoderBlock"):
        encoder_blocks(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)))
    assert len(encoder_blocks(vitlib.ViT(**MODEL))) == MODEL["num_transformer_layers"]


def test_vitlib_train_refuses_parallel_fsdp_without_torchrun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = ["train", "--epochs", "1", "--max-steps", "1", "--layers", "1", "--no-progress"]
    assert main([*run, "--parallel", "fsdp", "--output-dir", str(tmp_path / "run")]) == 2
    assert "--parallel fsdp" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main([*run, "--parallel", "zero3", "--output-dir", str(tmp_path / "run")]) == 2
    assert "argument --parallel: invalid choice: 'zero3'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_memory_benchmark_shows_fsdp_holding_half_of_ddps_state(tmp_path: Path) -> None:
    """benchmarks/fsdp_memory.py --quick: with 2 processes each holds half the parameters,
    gradients and AdamW state under FSDP (shards are padded, hence the tolerance)."""
    benchmark = load_module(ROOT / "benchmarks" / "fsdp_memory.py")
    assert benchmark.main(["--quick", "--json", str(tmp_path / "rows.json")]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(row["mode"], row["rank"]) for row in rows] == [
        ("ddp", 0),
        ("ddp", 1),
        ("fsdp", 0),
        ("fsdp", 1),
    ]
    ddp, fsdp = rows[0], rows[2]
    for name in ("parameters", "gradients", "optimizer"):
        assert fsdp[name] == pytest.approx(ddp[name] / 2, rel=0.02), name


def test_gradient_sync_switch_refuses_an_unsharded_model() -> None:
    from vitlib.training.fsdp import fsdp_gradient_sync

    switch = fsdp_gradient_sync(nn.Linear(2, 2), enabled=False)
    with pytest.raises(TypeError, match="sharded by fully_shard, got a Linear"), switch:
        pass
