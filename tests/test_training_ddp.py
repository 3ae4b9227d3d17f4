"""Two CPU processes under torchrun (gloo): identical weights and metrics, rank 0 alone saves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .helpers import ROOT

WORKER = textwrap.dedent(
    """
    import hashlib
    import json
    import sys
    from pathlib import Path

    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    import vitlib.training.resume as resume_module
    from vitlib.data import make_dataloaders
    from vitlib.training import distributed_session, fit, seed_everything

    out = Path(sys.argv[1])
    with distributed_session() as context:
        save_checkpoint = resume_module.save_checkpoint

        def recording_save(*args, **kwargs):
            (out / f"saved_by_rank{context.rank}").touch()
            save_checkpoint(*args, **kwargs)

        resume_module.save_checkpoint = recording_save
        inputs = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
        labels = (inputs[:, 0] + inputs[:, 1] > 0).long()
        train_loader, test_loader = make_dataloaders(
            TensorDataset(inputs, labels), TensorDataset(inputs[:20], labels[:20]), 8,
            distributed=True,
        )
        seed_everything(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
        history = fit(
            model, train_loader, test_loader, epochs=2, lr=0.05, warmup_steps=2,
            accumulation_steps=2, output_dir=out / "run", progress=False,
        )
        weights = b"".join(t.numpy().tobytes() for t in model.state_dict().values())
        report = {
            "world_size": context.world_size,
            "digest": hashlib.sha256(weights).hexdigest(),
            "history": history.as_dict(),
        }
        (out / f"rank{context.rank}.json").write_text(json.dumps(report))
    """
)


def torchrun(*args: str, cwd: Path, processes: int = 2) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(processes),
    ]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.slow
def test_two_ranks_end_with_identical_weights_and_only_rank_0_saves(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    result = torchrun(str(script), str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    assert reports[0]["digest"] == reports[1]["digest"]
    assert reports[0]["history"] == reports[1]["history"]  # train metrics summed over the shards
    assert sorted(p.name for p in tmp_path.glob("saved_by_rank*")) == ["saved_by_rank0"]
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best", "history.json", "last"]
    assert json.loads((run / "history.json").read_text()) == reports[0]["history"]


@pytest.mark.slow
def test_the_example_runs_under_torchrun(tmp_path: Path) -> None:
    example = ROOT / "examples" / "train_from_scratch.py"
    result = torchrun(
        str(example),
        "--layers", "1", "--epochs", "1", "--max-steps", "3", "--no-progress",
        "--output-dir", str(tmp_path / "run"),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("final test accuracy") == 1  # rank 0 alone reports
    assert "2 process(es)" in result.stdout
    assert (tmp_path / "run" / "last" / "training_state.pt").is_file()
