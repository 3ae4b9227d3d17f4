"""``vitlib ... --help`` and the command's error lines, read as a shell user reads them.

Every default shows (zeros included); switches name the flag in force, never ``True``/``False``;
lines never break inside a flag or a URL; each command points to its page of the published docs
(not to a docs/ folder a pip install does not have); a failure names flags, not keywords.
"""

from __future__ import annotations

import argparse
import logging
import re
import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vitlib.cli import main
from vitlib.cli import presets as presets_command
from vitlib.cli.main import build_parser
from vitlib.cli.options import DOCS_URL, GUIDES, HelpFormatter, docs_url
from vitlib.errors import ConfigError

from .helpers import ROOT

MKDOCS = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


COMMANDS = _commands()


def _help(parser: argparse.ArgumentParser, monkeypatch: pytest.MonkeyPatch, width: int) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    return parser.format_help()


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings]


def _is_switch(action: argparse.Action) -> bool:
    return isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))


def _option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help of ``action`` alone, on one line, as ``--help`` shows it."""
    formatter = HelpFormatter(parser.prog, width=10_000)
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_default_shows_once_zeros_included(name: str) -> None:
    parser = COMMANDS[name]
    for action in _options(parser):
        shown = _option_help(parser, action)
        if _is_switch(action) or action.default in (None, argparse.SUPPRESS):
            assert "(default: True)" not in shown, shown
            assert "(default: False)" not in shown, shown
            continue
        expected = f"(default: {action.default})"
        assert shown.count(expected) == 1, f"{name} {action.option_strings[0]}: {shown}"


def test_a_zero_default_shows() -> None:
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--workers", type=int, default=0, help="loader processes")
    parser.add_argument("--rate", type=float, default=0.0, help="dropout")
    parser.add_argument("--name", default="", help="a name")
    parser.add_argument("--out", default="runs/50%", help="where")
    text = " ".join(parser.format_help().split())
    assert "loader processes (default: 0)" in text
    assert "dropout (default: 0.0)" in text
    assert "a name (default: '')" in text
    assert "where (default: runs/50%)" in text


def test_switches_name_the_flag_in_force() -> None:
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--clean", action=argparse.BooleanOptionalAction, default=True, help="c")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=False, help="f")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="no pictures")
    text = " ".join(parser.format_help().split())
    assert "c (default: --clean)" in text
    assert "f (default: --no-fast)" in text
    assert "no pictures" in text
    assert "True" not in text
    assert "False" not in text


@given(st.integers(min_value=30, max_value=120))
def test_help_lines_never_break_inside_a_flag_or_a_url(width: int) -> None:
    for parser in [build_parser(), *COMMANDS.values()]:
        formatter = HelpFormatter(parser.prog, width=width)
        for group in parser._action_groups:
            formatter.start_section(group.title)
            formatter.add_arguments(group._group_actions)
            formatter.end_section()
        formatter.add_text(parser.epilog)
        text = formatter.format_help()
        assert not re.search(r"\w-\n", text), text  # "--output-" / "dir"
        for url in re.findall(r"https://\S+", parser.epilog or ""):
            assert url in text, text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_points_to_its_page_of_the_published_docs(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _help(COMMANDS[name], monkeypatch, width=200)
    assert docs_url("cli") in text
    if name in GUIDES:
        assert docs_url(GUIDES[name]) in text


def test_the_top_level_help_points_to_the_docs(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _help(build_parser(), monkeypatch, width=200)
    assert DOCS_URL in text
    assert docs_url("cli") in text
    assert "docs/" not in text


@pytest.mark.parametrize("name", ["predict"])
def test_help_texts_name_no_repository_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not re.search(r"docs/\w+\.md", _help(COMMANDS[name], monkeypatch, width=200))


def test_the_docs_urls_are_those_the_site_is_published_at() -> None:
    site_url = re.search(r"^site_url:\s*(\S+)", MKDOCS, re.MULTILINE)
    assert site_url is not None
    assert site_url.group(1) == DOCS_URL
    # Pages are <page>/ (docs_url) because the site uses MkDocs' directory URLs.
    assert not re.search(r"^use_directory_urls:\s*false\b", MKDOCS, re.MULTILINE)
    assert docs_url() == DOCS_URL
    assert docs_url("training") == f"{DOCS_URL}training/"


@pytest.mark.parametrize("page", sorted({*GUIDES.values(), "cli"}))
def test_each_guide_is_a_page_of_the_site(page: str) -> None:
    assert (ROOT / "docs" / f"{page}.md").is_file()
    assert re.search(rf":\s*{page}\.md\s*$", MKDOCS, re.MULTILINE), f"{page}.md not in the nav"


def test_guides_name_only_commands_that_exist() -> None:
    assert set(GUIDES) <= set(COMMANDS)


# ---- failures name flags -------------------------------------------------------------------


def test_a_refused_output_names_the_flag_not_the_keyword(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "model.onnx"
    taken.write_bytes(b"")
    assert main(["convert", "torchvision:vit_b_16", str(taken), "--to", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err
    assert "overwrite=True" not in err


@pytest.mark.parametrize(
    ("name", "keyword", "flag"),
    [
        (name, f"{action.dest}={not action.default}", action.option_strings[0])
        for name, parser in sorted(COMMANDS.items())
        for action in _options(parser)
        if _is_switch(action)
    ],
)
def test_every_switch_keyword_in_an_error_is_shown_as_its_flag(
    name: str,
    keyword: str,
    flag: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refuse(args: argparse.Namespace) -> int:
        raise ConfigError(f"refused; pass {keyword} to go on (not my_{keyword})")

    monkeypatch.setattr(f"vitlib.cli.{name}.run", refuse)
    required = {
        "convert": ["a", "b"],
        "evaluate": ["run", "--data", "digits"],
        "finetune": ["--checkpoint", "x"],
        "predict": ["run", "image.jpg"],
        "probe": ["run", "--data", "digits"],
        "demo": ["run"],
        "summary": ["ViT-B/16"],
    }.get(name, [])
    assert main([name, *required]) == 2
    err = capsys.readouterr().err
    assert f"pass {flag} to go on" in err, err
    assert f"(not my_{keyword})" in err, err  # only the whole keyword is replaced


# ---- warnings under torchrun ---------------------------------------------------------------


def _warn(args: argparse.Namespace) -> int:
    warnings.warn("a Python warning", UserWarning, stacklevel=1)
    logging.getLogger("vitlib.training").warning("a logged warning")
    return 0


@pytest.mark.parametrize(("rank", "shown"), [(None, True), ("0", True), ("1", False)])
def test_warnings_show_once_under_torchrun(
    rank: str | None,
    shown: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    monkeypatch.setattr(presets_command, "run", _warn)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["presets"]) == 0
    assert any("a Python warning" in str(w.message) for w in caught) is shown
    assert ("a logged warning" in caplog.text) is shown
    assert logging.getLogger("vitlib").level == logging.NOTSET  # restored
