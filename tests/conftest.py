"""Shared test settings: deterministic torch, hypothesis budgets, and no silent skips in CI.

Hypothesis profiles (``HYPOTHESIS_PROFILE``): ``vitlib`` (default, 25 examples per property, a
quick local run), ``ci`` (what ``scripts/check.sh`` and ``.ci/run`` use) and ``thorough``.

``--fail-on-skip`` (``scripts/check.sh`` passes it) turns every skipped test or module into a
failure: the dev requirements install every optional dependency, so a skip there means a broken
import that would otherwise show as a green "s".
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(min(2, os.cpu_count() or 1))

#: Examples per property test in CI: what docs/presets.md states.
CI_EXAMPLES = 200

settings.register_profile(
    "vitlib",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", parent=settings.get_profile("vitlib"), max_examples=CI_EXAMPLES)
settings.register_profile("thorough", parent=settings.get_profile("vitlib"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "vitlib"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fail-on-skip",
        action="store_true",
        help="report every skipped test or module as a failure (CI: nothing may be skipped)",
    )


def _fail_if_skipped(
    config: pytest.Config, report: pytest.TestReport | pytest.CollectReport
) -> None:
    if report.skipped and config.getoption("--fail-on-skip"):
        report.outcome = "failed"
        report.longrepr = f"skipped under --fail-on-skip: {report.longrepr}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not hasattr(report, "wasxfail"):  # an expected failure is not a skip
        _fail_if_skipped(item.config, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_if_skipped(collector.config, report)
    return report


@pytest.fixture
def shared_tmp() -> Generator[Path, None, None]:
    """A temporary folder every user can reach (pytest's ``tmp_path`` is private to its user),
    for `tests.helpers.unreadable`; removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="vitlib-shared-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
