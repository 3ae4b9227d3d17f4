"""The README and docs say what the code does: their examples run, their tables are current."""

from __future__ import annotations

import importlib.util
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(path: Path) -> list[str]:
    """The document's python examples, except those marked ``# (network)`` (they download)."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [block for block in blocks if not block.startswith("# (network)")]


def _load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore::vitlib.AdaptedCheckpointWarning")
@pytest.mark.parametrize("document", ["README.md", "docs/index.md", "docs/pretrained.md"])
def test_python_examples_run_as_written(document: str) -> None:
    blocks = _python_blocks(ROOT / document)
    assert blocks, f"{document} has no python example"
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for block in blocks:
        exec(compile(block, document, "exec"), namespace)


def test_readme_custom_variant_matches_the_closed_form_count() -> None:
    namespace: dict[str, object] = {"__name__": "__readme__"}
    custom = next(block for block in _python_blocks(ROOT / "README.md") if "MeanPooledViT" in block)
    exec(compile(custom, "README.md", "exec"), namespace)
    assert "cfg" in namespace
    assert "model" in namespace


@pytest.mark.parametrize("document", ["README.md", "docs/presets.md"])
def test_generated_sections_are_current(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    assert _load_tool("sync_docs").render(text) == text, "run: python tools/sync_docs.py"


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


def test_example_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "build_custom_vit.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
