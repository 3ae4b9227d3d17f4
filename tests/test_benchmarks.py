"""Benchmark scripts run end to end in their quick modes (CI has no GPU, and times nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, load_module

GPU_SCRIPT = ROOT / "benchmarks" / "gpu.py"
PROFILE_SCRIPT = ROOT / "benchmarks" / "profile_ops.py"


def _run(script: Path, *args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script with this interpreter; fail with its stderr if it fails."""
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_gpu_benchmark_quick_mode_runs_on_the_cpu(tmp_path: Path) -> None:
    out, table = tmp_path / "gpu.json", tmp_path / "gpu.md"
    _run(
        GPU_SCRIPT,
        *("--device", "cpu", "--quick", "--models", "vitlib,transformers"),
        *("--json", str(out), "--markdown", str(table)),
        timeout=600,
    )
    report = json.loads(out.read_text())
    assert [row["implementation"] for row in report["rows"]] == ["vitlib", "transformers"]
    for row in report["rows"]:
        for task in ("inference", "training"):
            assert row[f"{task}_img_per_s"] > 0
            assert row[f"{task}_best_img_per_s"] >= row[f"{task}_img_per_s"]
            assert row[f"{task}_share_of_gemm"] > 0
            assert row[f"{task}_mfu"] is None  # a CPU has no peak in the table
    assert report["vitlib_loop"]["ratio"] > 0
    assert report["bf16_gemm_tflops"] > 0
    text = table.read_text()
    assert "| vitlib |" in text
    assert "| transformers |" in text
    assert "train_one_epoch against the bare loop" in text


def test_gpu_benchmark_finds_the_peak_of_known_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = load_module(GPU_SCRIPT, "vitlib_gpu_benchmark")
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 PCIe")
    assert gpu.peak_tflops(cuda, None) == (756.0, "data sheet of H100 PCIe (NVIDIA H100 PCIe)")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert gpu.peak_tflops(cuda, None)[0] == 989.4
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Mystery GPU")
    peak, source = gpu.peak_tflops(cuda, None)
    assert peak is None
    assert "--peak-tflops" in source
    assert gpu.peak_tflops(cuda, 500.0) == (500.0, "--peak-tflops")
    assert gpu.peak_tflops(torch.device("cpu"), None)[0] is None


def test_class_token_shortcut_benchmark_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "shortcut.json"
    script = ROOT / "benchmarks" / "class_token_shortcut.py"
    done = _run(script, "--quick", "--rounds", "2", "--json", str(out), timeout=300)
    report = json.loads(out.read_text())
    assert report["inference"]["shortcut_images_per_s"] > 0
    assert report["inference"]["full_images_per_s"] > 0
    assert len(report["inference"]["seconds"]["full"]) == 2
    assert "training" not in report  # training has no shortcut
    assert 0 < report["flops_saved"] < 1
    assert report["max_logit_difference"] <= 1e-5
    assert "| inference | 8 |" in done.stdout


def test_profile_sorts_operators_into_kinds_of_work() -> None:
    profile_ops = load_module(PROFILE_SCRIPT, "vitlib_profile_ops")
    assert profile_ops.kind_of("aten::addmm") == "GEMMs"
    assert profile_ops.kind_of("aten::convolution_backward") == "GEMMs"
    assert profile_ops.kind_of("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert profile_ops.kind_of("aten::bmm") == "attention"  # unfused attention of a peer
    assert profile_ops.kind_of("optimiser: aten::add_") == "optimiser"
    assert profile_ops.kind_of("aten::add_") == "element-wise and copies"
    ops = {"aten::mm": (3.0, 2), "inductor kernels": (1.0, 4), "optimiser: aten::mul_": (0.5, 9)}
    assert profile_ops.kinds(ops) == {
        "GEMMs": 3.0,
        "attention": 0.0,
        "element-wise and copies": 1.0,
        "optimiser": 0.5,
    }


@pytest.mark.slow
def test_profile_of_the_compiled_model_shows_inductors_kernels(tmp_path: Path) -> None:
    out = tmp_path / "ops.json"
    args = ("--models", "vitlib", "--compiled", "--preset", "tiny", "--steps", "1")
    done = _run(PROFILE_SCRIPT, *args, "--json", str(out), timeout=600)
    training = json.loads(out.read_text())["tasks"]["train-b16"]
    eager, compiled = training["vitlib"], training["vitlib compiled"]
    assert "inductor kernels" not in eager
    assert compiled["inductor kernels"][1] > 0  # calls per step
    for ops in (eager, compiled):
        assert ops["aten::mm"][1] > 0  # the backward GEMMs stay ATen's, compiled or not
        assert any(op.startswith("optimiser: ") for op in ops)
    assert "| element-wise and copies |" in done.stdout
    assert "| `inductor kernels` | - |" in done.stdout


@pytest.mark.slow
def test_fast_paths_benchmark_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "fast.json"
    done = _run(ROOT / "benchmarks" / "fast_paths.py", "--quick", "--json", str(out), timeout=600)
    report = json.loads(out.read_text())
    assert set(report["inference"]) >= {"fp32", "int8"}
    assert list(report["training"]) == ["plain", "checkpointed", "bf16 autocast"]
    dtypes = {name: row["logits_dtype"] for name, row in report["training"].items()}
    assert dtypes == {
        "plain": "torch.float32",
        "checkpointed": "torch.float32",
        "bf16 autocast": "torch.bfloat16",
    }
    for row in report["training"].values():
        assert row["img_per_s"] > 0
        assert row["training_mib"] == row["steady_mib"] + row["step_peak_mib"]
    assert "| bf16 autocast |" in done.stdout
    assert "x float32's speed" in done.stdout  # the bf16 summary line


@pytest.mark.slow
def test_photos_benchmark_quick_mode_compares_with_the_hf_pipeline(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    out = tmp_path / "photos.json"
    done = _run(ROOT / "benchmarks" / "photos.py", "--quick", "--json", str(out), timeout=600)
    report = json.loads(out.read_text())
    rows = {row["runner"]: row for row in report["rows"]}
    assert list(rows) == ["vitlib fp32", "vitlib int8", "HF pipeline", "HF pipeline, workers"]
    for row in rows.values():
        assert row["photos"] == 6
        assert row["images_per_s"] > 0
        assert row["model_images_per_s"] > 0
        assert row["decode_ms"] > 0
        assert 0.0 <= row["top1_agreement_with_hf"] <= 1.0
        assert 0.0 <= row["top1_accuracy"] <= 1.0
    assert max(rows["HF pipeline"]["vs_hf"], rows["HF pipeline, workers"]["vs_hf"]) == 1.0
    assert rows["HF pipeline"]["top1_agreement_with_hf"] == 1.0
    assert set(report["targets_met"]) == {
        "ViT-Ti/16 fp32 >= 90% of model-only",
        "ViT-Ti/16 fp32 >= 1.5x HF",
        "ViT-Ti/16 int8 >= 4x HF",
    }
    assert "| ViT-Ti/16 | vitlib fp32 |" in done.stdout


@pytest.mark.slow
def test_inference_memory_benchmark_measures_both_commands(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    script = ROOT / "benchmarks" / "inference_memory.py"
    done = _run(script, "--counts", "8,100", "--repeats", "1", "--json", str(out), timeout=600)
    rows = json.loads(out.read_text())["rows"]
    assert [(row["command"], row["images"]) for row in rows] == [
        ("predict", 8),
        ("evaluate", 8),
        ("predict", 100),
        ("evaluate", 100),
    ]
    assert all(row["peak_mib"] > 50 for row in rows)  # a Python process with torch loaded
    assert rows[0]["worker_peak_mib"] == 0  # one batch: decoded in the command's process
    assert rows[2]["worker_peak_mib"] > 0  # beyond one batch: decoding workers ran
    assert rows[3]["worker_peak_mib"] > 0
    assert "| vitlib evaluate | 100 |" in done.stdout
