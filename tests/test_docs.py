"""The README and docs say what the code does: their examples run, their tables are current."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import vitlib
from vitlib.analysis.reports import presets_markdown
from vitlib.blocks import TransformerEncoderBlock

from .helpers import ROOT, load_module

SYNC_DOCS = load_module(ROOT / "tools" / "sync_docs.py")
TABLE_START = "<!-- presets-table:start -->\n"
TABLE_END = "\n<!-- presets-table:end -->"
#: The fixed directory docs/pretrained.md saves its examples under; the test runs them in a
#: private temporary directory instead, so that concurrent runs cannot collide.
DOCS_SCRATCH = "/tmp/vitlib-docs"


def _python_blocks(path: Path) -> list[str]:
    """The document's python examples, except those marked ``# (network)`` (they download)."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [block for block in blocks if not block.startswith("# (network)")]


@pytest.mark.filterwarnings("ignore::vitlib.AdaptedCheckpointWarning")
@pytest.mark.parametrize("document", ["README.md", "docs/index.md", "docs/pretrained.md"])
def test_python_examples_run_as_written(
    document: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _python_blocks(ROOT / document)
    assert blocks, f"{document} has no python example"
    monkeypatch.chdir(tmp_path)  # relative paths the examples write land here
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for block in blocks:
        code = block.replace(DOCS_SCRATCH, str(tmp_path / "vitlib-docs"))
        exec(compile(code, document, "exec"), namespace)


def test_readme_custom_variant_matches_the_closed_form_count() -> None:
    namespace: dict[str, object] = {"__name__": "__readme__"}
    custom = next(block for block in _python_blocks(ROOT / "README.md") if "MeanPooledViT" in block)
    exec(compile(custom, "README.md", "exec"), namespace)
    cfg, model = namespace["cfg"], namespace["model"]
    assert isinstance(cfg, vitlib.ViTConfig)
    assert isinstance(model, nn.Module)
    # the README asserts this itself; the test must not depend on that line staying there
    assert vitlib.count_parameters(cfg) == sum(p.numel() for p in model.parameters())
    # and the config describes the same tensors, not just the same total
    library = vitlib.ViT.from_config(cfg)
    assert sorted(tuple(p.shape) for p in model.parameters()) == sorted(
        tuple(p.shape) for p in library.parameters()
    )
    assert model(torch.randn(4, 3, 32, 48)).shape == (4, 10)


@pytest.mark.parametrize("document", SYNC_DOCS.GENERATED["presets-table"][1])
def test_the_presets_table_is_filled_and_current(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    assert text.count(TABLE_START) == 1, f"{document} lost its presets-table:start marker"
    assert text.count(TABLE_END) == 1, f"{document} lost its presets-table:end marker"
    section = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    assert section == presets_markdown(), "run: python tools/sync_docs.py"
    assert "| ViT-B/16 | 12 | 768 | 3072 | 12 | 86,567,656 |" in section
    assert SYNC_DOCS.render(text, document) == text


def test_the_sharding_memory_table_is_filled_current_and_right() -> None:
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    start, end = "<!-- sharding-memory:start -->\n", "<!-- sharding-memory:end -->"
    section = text.split(start, 1)[1].split(end, 1)[0]
    assert section.strip() == SYNC_DOCS.sharding_memory_markdown()
    assert SYNC_DOCS.render(text, "docs/training.md") == text
    # By hand: ViT-H/14 has 632,045,800 parameters, 16 bytes each is 10.11 GB, 1.26 GB on 8;
    # one of its blocks, built, holds 19,677,440 parameters: 2 x 4 bytes each is 157 MB.
    block = TransformerEncoderBlock(1280, 16, 5120)
    assert sum(p.numel() for p in block.parameters()) == 19_677_440
    assert "| ViT-H/14 | 632.0 M | 10.11 GB | 2.53 GB | 1.26 GB | 0.63 GB | 157 MB |" in section


def _copy_docs(root: Path) -> None:
    for relative in SYNC_DOCS.FILES:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / relative, root / relative)


def test_the_check_fails_on_an_empty_stale_or_missing_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _copy_docs(tmp_path)
    check = ["--check", "--root", str(tmp_path)]
    readme = tmp_path / "README.md"
    current = readme.read_text(encoding="utf-8")
    assert SYNC_DOCS.main(check) == 0

    section = current.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    readme.write_text(current.replace(section, ""), encoding="utf-8")  # the old, empty state
    assert SYNC_DOCS.main(check) == 1
    assert "README.md: a generated section is stale or empty" in capsys.readouterr().err
    cli = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "sync_docs.py"), *check],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert cli.returncode == 1, cli.stderr
    assert SYNC_DOCS.main(["--root", str(tmp_path)]) == 0  # fills it in
    assert readme.read_text(encoding="utf-8") == current

    readme.write_text(current.replace("86,567,656", "86,567,657"), encoding="utf-8")
    assert SYNC_DOCS.main(check) == 1

    capsys.readouterr()
    for marker in (TABLE_START, TABLE_END):
        broken = current.replace(marker, "\n")
        readme.write_text(broken, encoding="utf-8")
        assert SYNC_DOCS.main(check) == 1
        assert "README.md: expected one line '<!-- presets-table:start -->'" in (
            capsys.readouterr().err
        )
        assert SYNC_DOCS.main(["--root", str(tmp_path)]) == 1  # nothing to fill: an error
        assert readme.read_text(encoding="utf-8") == broken
        with pytest.raises(SYNC_DOCS.SectionError, match=r"found [01] start and [01] end"):
            SYNC_DOCS.render(broken, "README.md")


def test_readme_quickstart_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", quickstart, flags=re.DOTALL)
    assert len(commands) == 2
    assert all(len(command.strip().splitlines()) == 1 for command in commands)


def test_build_custom_vit_example_proves_its_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / "build_custom_vit.py"), run_name="__main__")
    out = capsys.readouterr().out
    params = re.search(r"parameters: ([\d,]+) \(vitlib.count_parameters: ([\d,]+)\)", out)
    flops = re.search(r"FLOPs per image: ([\d.]+) M \(vitlib.count_flops: ([\d.]+) M\)", out)
    assert params is not None
    assert flops is not None
    assert params.group(1) == params.group(2)
    assert flops.group(1) == flops.group(2)
    assert "output shape: (4, 10)" in out
    assert "same logits: True" in out
    # the printed FLOPs are rounded to 0.1 M: compare the exact counts too
    example = load_module(ROOT / "examples" / "build_custom_vit.py", "build_custom_vit")
    model = example.MeanPooledViT(
        img_size=(32, 48), patch_size=8, depth=6, dim=192, heads=3, mlp_size=768, num_classes=10
    ).eval()
    cfg = vitlib.ViTConfig(
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
    assert example.measured_flops(model, torch.randn(1, 3, 32, 48)) == vitlib.count_flops(cfg)


def test_example_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "build_custom_vit.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def _docstring_examples() -> list[doctest.DocTest]:
    """Every ``Examples:`` block in the library's docstrings (the API reference shows them)."""
    found = []
    for info in pkgutil.walk_packages(vitlib.__path__, "vitlib."):
        if info.name == "vitlib.__main__":  # importing it runs the command line
            continue
        module = importlib.import_module(info.name)
        names = {"vitlib": vitlib, "torch": torch, **vars(module)}
        for test in doctest.DocTestFinder().find(module, info.name, globs=names):
            if test.examples and test.name.startswith(info.name):
                found.append(test)
    return found


@pytest.mark.parametrize("example", _docstring_examples(), ids=lambda test: test.name)
def test_docstring_examples_give_what_they_show(example: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    outcome = runner.run(example, out=report.append)
    assert outcome.failed == 0, "".join(report)
