"""The shape of the code (docs/architecture.md): a light root, one home per mechanism, short
functions, no private names across modules, and the same mistake refused the same way
everywhere."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

import vitlib
from vitlib.checkpoints import SAVE_FORMATS, export_state_dict
from vitlib.cli import main
from vitlib.data import make_dataloaders

from .helpers import ROOT, tiny_vit

SOURCE = ROOT / "src" / "vitlib"
#: The longest a function may be, decorators and docstring included.
MAX_FUNCTION_LINES = 100
#: The most vitlib modules ``import vitlib`` may load (the model and its blocks).
MAX_ROOT_MODULES = 20


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in sorted(SOURCE.rglob("*.py"))]


def test_import_vitlib_loads_only_what_the_model_needs() -> None:
    code = "import sys, vitlib; print(sorted(m for m in sys.modules if m.startswith('vitlib')))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    modules = ast.literal_eval(loaded)
    assert len(modules) <= MAX_ROOT_MODULES, modules
    assert "vitlib.vit" in modules
    for heavy in ("vitlib.checkpoints", "vitlib.training", "vitlib.inference", "vitlib.data"):
        assert heavy not in modules


def test_every_root_name_resolves_and_is_documented() -> None:
    for name in vitlib.__all__:
        value = getattr(vitlib, name)
        assert name == "__version__" or value.__doc__, name
    assert set(vitlib.__all__) <= set(dir(vitlib))
    with pytest.raises(AttributeError, match="has no attribute 'plots'"):
        vitlib.plots  # noqa: B018


def test_no_function_is_longer_than_the_limit() -> None:
    long = [
        f"{path.relative_to(SOURCE)}:{node.lineno} {node.name} ({length} lines)"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (length := node.end_lineno - node.lineno + 1 + len(node.decorator_list))  # type: ignore[operator]
        > MAX_FUNCTION_LINES
    ]
    assert not long


def test_no_private_name_is_imported_from_another_module() -> None:
    private = [
        f"{path.relative_to(SOURCE)}: from {node.module} import {alias.name}"
        for path, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vitlib")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert not private


def _loader_batch_size(batch_size: Any) -> object:
    data = TensorDataset(torch.zeros(4, 3, 16, 16), torch.zeros(4, dtype=torch.long))
    return make_dataloaders(data, data, batch_size)


@pytest.mark.parametrize("batch_size", [0, -3, "8", True])
def test_a_bad_batch_size_is_refused_the_same_way_everywhere(batch_size: Any) -> None:
    model, images = tiny_vit(), torch.rand(3, 16, 16)
    calls: list[Callable[[], object]] = [
        lambda: vitlib.predict(model, images, batch_size=batch_size),
        lambda: vitlib.evaluate_model(
            model, [(images[None], torch.zeros(1))], batch_size=batch_size
        ),
        lambda: _loader_batch_size(batch_size),
    ]
    caught: list[Exception] = []
    for call in calls:
        with pytest.raises(vitlib.VitlibError) as error:
            call()
        caught.append(error.value)
    assert len({(type(error), str(error)) for error in caught}) == 1, caught
    expected = TypeError if isinstance(batch_size, (str, bool)) else ValueError
    assert isinstance(caught[0], expected)
    assert str(caught[0]).startswith("batch_size must be an int >= 1, got ")


def test_the_command_refuses_what_its_api_twin_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "model", "image.png", "--batch-size", "0"]) == 2
    assert "argument --batch-size: must be an int >= 1, got 0." in capsys.readouterr().err


def test_the_convert_formats_come_from_the_family_registry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    assert "{" + ",".join((*SAVE_FORMATS, "onnx")) + "}" in capsys.readouterr().out
    assert SAVE_FORMATS == ("vitlib", "huggingface")


@pytest.mark.parametrize("preset", ["ViT-Ti/16", "ViT-S/16"])
@pytest.mark.parametrize("family", ["vitlib", "timm", "huggingface"])
def test_a_preset_equals_itself_after_export_and_load(
    preset: str, family: str, tmp_path: Path
) -> None:
    """The same preset is one model: created, or exported and loaded back (dropouts included;
    a bare Hugging Face state dict would take Hugging Face's layer-norm epsilon, so its folder
    with config.json is loaded)."""
    created = vitlib.create_model(preset)
    if family == "huggingface":
        source: Any = vitlib.save_pretrained(created, tmp_path / "hf", format=family)
    else:
        source = export_state_dict(created, family)
    loaded = vitlib.load_pretrained(source)
    assert loaded.config == created.config
    assert (loaded.config.mlp_dropout, loaded.config.embedding_dropout) == (0.0, 0.0)
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), created.eval()(images))


def test_the_constructor_takes_the_configs_fields() -> None:
    config = vitlib.ViTConfig(img_size=32, patch_size=8, num_transformer_layers=1, num_classes=3)
    assert vitlib.ViT(**config.to_dict()).config == config
    assert vitlib.ViT(config).config is config
    assert vitlib.ViT(config, num_classes=5).config == config.replace(num_classes=5)
    with pytest.raises(TypeError, match=r"ViT got unknown ViTConfig field\(s\) 'depth'"):
        vitlib.ViT(depth=3)
