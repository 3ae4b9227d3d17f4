"""fit's per-epoch lines show without the caller configuring logging, with or without tqdm."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import ROOT

_SCRIPT = """
import sys
{hide_tqdm}
from tests.training_helpers import loaders, tiny_net
from vitlib.training import fit
train_loader, test_loader = loaders()
fit(tiny_net(), train_loader, test_loader, epochs=2, lr=0.05, progress=True)
"""


@pytest.mark.parametrize("tqdm", [True, False], ids=["with-tqdm", "without-tqdm"])
def test_epoch_lines_are_printed_when_logging_is_not_configured(tqdm: bool) -> None:
    if tqdm:
        pytest.importorskip("tqdm")
    hide = "" if tqdm else "sys.modules['tqdm'] = None; sys.modules['tqdm.auto'] = None"
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(hide_tqdm=hide)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert any(line.startswith("epoch 1/2  train loss") for line in lines), result.stdout
    assert any(line.startswith("epoch 2/2  train loss") for line in lines), result.stdout
    if not tqdm:  # the per-batch lines stand in for the bar
        assert any(line.startswith("epoch 1 train 5/5") for line in lines), result.stdout
