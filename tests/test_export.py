"""ONNX export: a dynamic batch, outputs equal to eager under onnxruntime, nothing overwritten."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import vitlib
from vitlib import ViT
from vitlib.cli import main
from vitlib.errors import ConfigError, InputTypeError
from vitlib.files import PARTIAL
from vitlib.inference import PrecisionWarning, optimize_for_inference
from vitlib.inference.export import MIN_ONNX_OPSET, ONNX_OPSET, export_onnx, onnx_opsets
from vitlib.inference.optimize import cpu_has_bf16_units

onnxruntime = pytest.importorskip("onnxruntime", reason="in the dev requirements (vitlib[onnx])")
pytest.importorskip("onnx", reason="in the dev requirements (vitlib[onnx])")

# Mean pooling, registers and a pre-logits layer: the branches a plain B/16 does not take.
VARIANT: dict[str, Any] = {
    "img_size": (16, 24),
    "patch_size": 8,
    "num_transformer_layers": 2,
    "embedding_dim": 16,
    "mlp_size": 32,
    "num_heads": 2,
    "num_classes": 3,
    "num_register_tokens": 1,
    "pool": "mean",
    "representation_size": 8,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ViT, Path]:
    torch.manual_seed(0)
    model = ViT(**VARIANT).train()  # exported in eval mode, and left in train mode
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")
    assert model.training
    return model.eval(), path


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_equals_eager_for_any_batch(exported: tuple[ViT, Path], batch: int) -> None:
    model, path = exported
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    images = torch.randn(batch, 3, 16, 24)
    (logits,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = model(images).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_an_existing_file_is_never_replaced_silently(exported: tuple[ViT, Path]) -> None:
    model, path = exported
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists; nothing was written"):
        export_onnx(model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"], "no staging left"


def test_only_vits_and_onnx_paths_are_exported(tmp_path: Path) -> None:
    not_a_vit: Any = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"model must be a vitlib\.ViT .*, got Linear"):
        export_onnx(not_a_vit, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match=r"writes a \.onnx file"):
        export_onnx(ViT(**VARIANT), tmp_path / "model.bin")


@pytest.mark.slow
def test_vitlib_convert_to_onnx(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ViT(**VARIANT).eval()
    vitlib.save_pretrained(model, tmp_path / "ck")
    assert main(["convert", str(tmp_path / "ck"), str(tmp_path / "m.onnx"), "--to", "onnx"]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    images = torch.randn(2, 3, 16, 24)
    (logits,) = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(logits, model(images).detach().numpy(), atol=1e-4, rtol=1e-4)


# --- what export_onnx refuses, and what it writes when asked for something unusual -------------


def _fake_exporter(opset: int, calls: list[str] | None = None) -> Any:
    """A stand-in for ``torch.onnx.export`` that writes a valid one-node file of ``opset`` at
    once (and records the path it was given)."""
    import onnx
    from onnx import TensorProto, helper

    def export(model: Any, args: Any, f: str, **kwargs: Any) -> None:
        if calls is not None:
            calls.append(f)
        tensor = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1])
        logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1])
        graph = helper.make_graph(
            [helper.make_node("Identity", ["images"], ["logits"])], "g", [tensor], [logits]
        )
        opsets = [helper.make_opsetid("", opset)]
        onnx.save(helper.make_model(graph, opset_imports=opsets), f)

    return export


def _no_export(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("torch.onnx.export was called; the refusal should come before any work")


def _contents(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def _tiny() -> ViT:
    torch.manual_seed(0)
    return ViT(**VARIANT).eval()


@pytest.mark.slow
@pytest.mark.parametrize("opset", [19, onnx_opsets()[-1]])
def test_the_file_has_the_opset_asked_for(tmp_path: Path, opset: int) -> None:
    """torch.onnx falls back to opset 18 when it cannot convert; the file must be ``opset``."""
    import onnx

    model = _tiny()
    path = export_onnx(model, tmp_path / "model.onnx", opset=opset)
    versions = [entry.version for entry in onnx.load(str(path)).opset_import if not entry.domain]
    assert versions == [opset]
    if opset == 19:  # a converted graph still runs and agrees with eager
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        images = torch.randn(3, 3, 16, 24)
        (logits,) = session.run(None, {"images": images.numpy()})
        np.testing.assert_allclose(logits, model(images).detach().numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("opset", "error", "message"),
    [
        (
            MIN_ONNX_OPSET - 1,
            ConfigError,
            r"opset must be an int >= 18 and <= \d+, got 17; torch's exporter",
        ),
        (onnx_opsets()[-1] + 1, ConfigError, r"converts it up to \d+ with the installed onnx"),
        ("18", InputTypeError, r"opset must be an int >= 18 .*, got '18' \(str\)"),
        (True, InputTypeError, r"opset must be an int .*, got True \(bool\)"),
    ],
)
def test_opsets_the_exporter_cannot_write_are_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opset: Any, error: type, message: str
) -> None:
    monkeypatch.setattr(torch.onnx, "export", _no_export)
    with pytest.raises(error, match=message):
        export_onnx(_tiny(), tmp_path / "model.onnx", opset=opset)
    assert _contents(tmp_path) == []


def test_a_file_of_another_opset_than_asked_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What torch does for an opset its converter cannot reach: it keeps 18 and only logs."""
    monkeypatch.setattr(torch.onnx, "export", _fake_exporter(ONNX_OPSET))
    target = tmp_path / "model.onnx"
    with pytest.raises(ConfigError, match=rf"asked for opset 19, .* wrote opset 18.*{target}"):
        export_onnx(_tiny(), target, opset=19)
    assert _contents(tmp_path) == [], "neither the file nor a staging folder is left"


@pytest.mark.slow
def test_max_batch_1_writes_a_graph_of_batch_1(tmp_path: Path) -> None:
    model = _tiny()
    path = export_onnx(model, tmp_path / "one.onnx", max_batch=1)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 16, 24]
    images = torch.randn(1, 3, 16, 24)
    (logits,) = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(logits, model(images).detach().numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("max_batch", "error"),
    [(0, ConfigError), (-4, ConfigError), (True, InputTypeError), (8.0, InputTypeError)],
)
def test_max_batch_must_be_a_positive_int(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_batch: Any, error: type
) -> None:
    monkeypatch.setattr(torch.onnx, "export", _no_export)
    with pytest.raises(error, match=rf"max_batch must be an int >= 1 .*, got {max_batch!r}"):
        export_onnx(_tiny(), tmp_path / "model.onnx", max_batch=max_batch)
    assert _contents(tmp_path) == []


def _bf16_copy() -> ViT:
    with pytest.warns(PrecisionWarning) if not cpu_has_bf16_units() else nullcontext():
        return optimize_for_inference(_tiny(), "bf16")


def _mixed() -> ViT:
    model = _tiny()
    model.head.double()
    return model


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_bf16_copy, r"got a model with bfloat16 weights: ONNX's Conv has no bfloat16 type"),
        (lambda: _tiny().double(), r"got a model with float64 weights: onnxruntime has no"),
        (_mixed, r"got a model with float32 and float64 weights: an ONNX graph needs one"),
    ],
)
def test_models_of_other_dtypes_are_refused_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[], ViT], message: str
) -> None:
    monkeypatch.setattr(torch.onnx, "export", _no_export)
    with pytest.raises(ConfigError, match=message + r".* Export the float32 model instead"):
        export_onnx(make(), tmp_path / "model.onnx")
    assert _contents(tmp_path) == []


@pytest.mark.slow
def test_a_float16_model_is_exported_as_a_float16_graph(tmp_path: Path) -> None:
    model = _tiny()
    path = export_onnx(_tiny().half(), tmp_path / "half.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float16)"
    images = torch.randn(2, 3, 16, 24)
    (logits,) = session.run(None, {"images": images.half().numpy()})
    assert logits.dtype == np.float16
    np.testing.assert_allclose(logits, model(images).detach().numpy(), atol=2e-2, rtol=2e-2)


def _torchao_int8() -> ViT:
    pytest.importorskip("torchao", reason="in vitlib[fast]")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    model = _tiny()
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


@pytest.mark.parametrize(
    "make", [lambda: optimize_for_inference(_tiny(), "int8"), _torchao_int8], ids=["ao", "torchao"]
)
def test_an_int8_model_is_refused_with_what_to_do_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[], ViT]
) -> None:
    model = make()
    monkeypatch.setattr(torch.onnx, "export", _no_export)
    with pytest.raises(ConfigError, match=r"cannot export an int8-quantised model.*Export the "):
        export_onnx(model, tmp_path / "model.onnx")
    assert _contents(tmp_path) == []


def test_a_model_on_the_meta_device_is_refused(tmp_path: Path) -> None:
    with torch.device("meta"):
        model = ViT(**VARIANT)
    with pytest.raises(ConfigError, match="on the meta device, which has no weights"):
        export_onnx(model, tmp_path / "model.onnx")


def test_a_folder_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """O21: with overwrite=True a folder named like the file used to break after the export,
    leaving the new file in a hidden folder and an error that named it."""
    folder = tmp_path / "dir.onnx"
    (folder / "inside").mkdir(parents=True)
    monkeypatch.setattr(torch.onnx, "export", _no_export)
    with pytest.raises(IsADirectoryError, match=rf"{folder} is a folder; .*never replaces") as info:
        export_onnx(_tiny(), folder, overwrite=True)
    assert info.value.filename == str(folder)
    assert _contents(tmp_path) == ["dir.onnx", "dir.onnx/inside"]


def test_a_folder_that_cannot_be_written_is_named_not_the_staging_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O22, simulated (the tests may run as root, whom a read-only folder does not stop)."""
    mkdir = Path.mkdir

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.parent == tmp_path / "ro" and self.name.startswith("."):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        mkdir(self, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(Path, "mkdir", read_only)
    monkeypatch.setattr(torch.onnx, "export", _fake_exporter(ONNX_OPSET))
    with pytest.raises(PermissionError, match=rf"cannot write into {tmp_path / 'ro'} ") as info:
        export_onnx(_tiny(), tmp_path / "ro" / "m.onnx")
    assert ".vitlib" not in str(info.value)
    assert _contents(tmp_path) == ["ro"]


def test_a_failed_write_names_the_folder_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous export")
    staging: list[str] = []

    def disk_full(model: Any, args: Any, f: str, **kwargs: Any) -> None:
        staging.append(f)
        Path(f).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device", f)

    monkeypatch.setattr(torch.onnx, "export", disk_full)
    with pytest.raises(OSError, match="No space left on device") as info:
        export_onnx(_tiny(), target, overwrite=True)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert ".vitlib" in staging[0]
    assert ".vitlib" not in str(info.value)
    assert target.read_bytes() == b"the previous export"
    assert _contents(tmp_path) == ["model.onnx"]


@pytest.mark.slow
def test_a_real_file_size_limit_names_the_folder(tmp_path: Path) -> None:
    """What torch's writer raises on a full disk (here RLIMIT_FSIZE): an OSError without a
    path, which must reach the user with the folder named and no staging folder left."""
    script = (
        "import resource, sys; from vitlib import ViT; from vitlib.inference import "
        "export_onnx; model = ViT(img_size=16, patch_size=8, num_transformer_layers=1, "
        "embedding_dim=64, mlp_size=128, num_heads=2, num_classes=3); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "try: export_onnx(model, sys.argv[1])\n"
        "except OSError as error: print('ERROR', error.errno, error)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    line = result.stdout.strip()
    assert line.startswith(f"ERROR {errno.EFBIG} "), result
    assert str(tmp_path) in line
    assert ".vitlib" not in line
    assert _contents(tmp_path) == []


def test_a_killed_export_is_cleaned_up_by_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O37: SIGKILL mid-export leaves the staging folder; the next write into the folder
    removes it."""
    partial = tmp_path / PARTIAL
    partial.mkdir()
    (partial / "m.onnx").write_bytes(b"cut off")
    monkeypatch.setattr(torch.onnx, "export", _fake_exporter(ONNX_OPSET))
    export_onnx(_tiny(), tmp_path / "other.onnx")
    assert _contents(tmp_path) == ["other.onnx"]


def test_path_and_overwrite_are_checked(tmp_path: Path) -> None:
    not_a_path: Any = 3
    with pytest.raises(InputTypeError, match=r"path must be a str or os\.PathLike .*, got 3"):
        export_onnx(_tiny(), not_a_path)
    not_a_bool: Any = "yes"
    with pytest.raises(InputTypeError, match=r"overwrite must be a bool .* got 'yes'"):
        export_onnx(_tiny(), tmp_path / "model.onnx", overwrite=not_a_bool)


@pytest.mark.parametrize(
    ("output", "message"),
    [("out_noext", r"writes a \.onnx file, got .*out_noext"), ("dir.onnx", "is a folder")],
)
def test_convert_refuses_a_bad_onnx_output_in_one_line_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str, message: str
) -> None:
    """CV02: one line and status 2, like every CLI error; the checkpoint is not even read
    (here it does not exist)."""
    (tmp_path / "dir.onnx").mkdir()
    argv = ["convert", str(tmp_path / "missing"), str(tmp_path / output), "--to", "onnx"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitlib convert: error: "), err
    assert err.count("\n") == 1, err
    assert re.search(message, err), err


@pytest.mark.slow
def test_the_documented_way_to_an_int8_onnx_file(
    exported: tuple[ViT, Path], tmp_path: Path
) -> None:
    """docs/deployment.md: export the float32 model, then quantise the file with onnxruntime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, path = exported
    quantize_dynamic(str(path), str(tmp_path / "model.int8.onnx"), weight_type=QuantType.QInt8)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.int8.onnx"))
    images = torch.randn(4, 3, 16, 24)
    (logits,) = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(logits, model(images).detach().numpy(), atol=0.1)
