"""The package: its public names (docs/api.md), version, typing marker and an installing wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch

import vitlib

from .helpers import ROOT

PUBLIC_NAMES = [
    "ViT",
    "ViTConfig",
    "PatchEmbedding",
    "MultiheadSelfAttentionBlock",
    "MLPBlock",
    "TransformerEncoderBlock",
    "create_model",
    "list_presets",
    "count_parameters",
    "count_flops",
]


def test_public_names_are_exported_and_documented() -> None:
    for name in PUBLIC_NAMES:
        assert name in vitlib.__all__
        assert getattr(vitlib, name).__doc__, name
    assert set(vitlib.__all__) <= set(dir(vitlib))


def test_version_and_typing_marker() -> None:
    assert isinstance(vitlib.__version__, str)
    assert vitlib.__version__
    assert (Path(vitlib.__file__).parent / "py.typed").exists()


@pytest.mark.slow
def test_wheel_and_sdist_build_and_the_wheel_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheels = list(dist.glob("vitlib-*.whl"))
    assert len(wheels) == 1
    assert len(list(dist.glob("vitlib-*.tar.gz"))) == 1
    # The fresh venv borrows this interpreter's torch/einops/numpy/safetensors through a .pth
    # path (nothing is downloaded); the wheel itself is installed without its dependencies and
    # imported from outside the source tree.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dependency_dir = Path(torch.__file__).resolve().parents[1]
    (Path(site_packages) / "borrowed_dependencies.pth").write_text(f"{dependency_dir}\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheels[0])],
        check=True,
        timeout=300,
    )
    names = ", ".join(PUBLIC_NAMES)
    script = (
        f"import vitlib, pathlib; from vitlib import {names}; "
        "assert 'site-packages' in vitlib.__file__, vitlib.__file__; "
        "assert (pathlib.Path(vitlib.__file__).parent / 'py.typed').exists(); "
        "print(count_parameters('ViT-B/16'))"
    )
    result = subprocess.run(
        [str(python), "-c", script],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "86567656"


@pytest.mark.parametrize("flag", [[], ["--fail-on-skip"]])
def test_fail_on_skip_turns_skipped_tests_and_modules_into_failures(
    tmp_path: Path, flag: list[str]
) -> None:
    """scripts/check.sh passes --fail-on-skip: a missing dev dependency cannot pass as green."""
    shutil.copyfile(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_module_skip.py").write_text(
        'import pytest\npytest.importorskip("no_such_module_anywhere")\n'
    )
    (tmp_path / "test_test_skip.py").write_text(
        "import pytest\n\n"
        "def test_skipped():\n    pytest.skip('no')\n\n"
        "@pytest.mark.xfail(strict=True)\ndef test_expected_failure():\n    raise ValueError\n\n"
        "def test_passes():\n    pass\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            *flag,
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    summary = result.stdout.strip().splitlines()[-1]
    if flag:
        assert result.returncode == 1, result.stdout
        assert "1 failed, 1 passed, 1 xfailed, 1 error" in summary
        assert "skipped under --fail-on-skip" in result.stdout
    else:
        assert result.returncode == 0, result.stdout
        assert "1 passed, 2 skipped, 1 xfailed" in summary
