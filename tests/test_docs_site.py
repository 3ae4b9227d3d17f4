"""The docs site works offline and opened from disk, and its home page walks a new user through.

Equations are typeset by a MathJax the site serves itself (never a CDN); every script and
stylesheet of every page is a file of the site; code blocks keep their lines (scroll, never
break inside a token); the home page goes install -> quickstart -> own folder -> predict -> demo
with commands that the current command line accepts.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from vitlib.cli.main import build_parser

from .helpers import ROOT, load_module

MKDOCS = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
HOOKS = load_module(ROOT / "tools" / "docs_hooks.py", "docs_hooks")
INDEX = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
EXTRA_CSS = (ROOT / "docs" / "stylesheets" / "extra.css").read_text(encoding="utf-8")
MATHJAX_ENTRY = f"{HOOKS.SITE_FOLDER}/{HOOKS.ENTRY_POINT}"


def _listed(key: str) -> list[str]:
    """The entries of the top-level list ``key:`` of mkdocs.yml (comments dropped)."""
    block = re.search(rf"^{key}:\n((?:[ \t]+-.*\n?)+)", MKDOCS, re.MULTILINE)
    assert block is not None, f"mkdocs.yml has no {key} list"
    return [line.split("#")[0].strip()[1:].strip() for line in block.group(1).splitlines()]


# ---- the configuration --------------------------------------------------------------------


def test_no_script_or_stylesheet_comes_from_the_network() -> None:
    for entry in _listed("extra_javascript") + _listed("extra_css"):
        assert not re.match(r"(https?:)?//", entry), f"{entry} needs the network"
        assert (ROOT / "docs" / entry).is_file() or entry == MATHJAX_ENTRY, entry


def test_mathjax_is_served_by_the_site_after_its_settings() -> None:
    scripts = _listed("extra_javascript")
    assert MATHJAX_ENTRY in scripts
    assert scripts.index("javascripts/mathjax.js") < scripts.index(MATHJAX_ENTRY)
    assert "tools/docs_hooks.py" in _listed("hooks")
    # The theme's fonts would come from Google Fonts: the system's are used instead.
    assert re.search(r"^\s+font:\s*false\b", MKDOCS, re.MULTILINE)


def test_the_pinned_package_is_the_one_the_hook_reads() -> None:
    requirements = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert re.search(rf"^{HOOKS.PACKAGE}==[\d.]+$", requirements, re.MULTILINE)


def test_the_hook_copies_mathjax_its_fonts_extensions_and_licence() -> None:
    folder = HOOKS.mathjax_folder()
    files = dict(HOOKS.mathjax_files(folder))
    assert files[HOOKS.ENTRY_POINT] == folder / HOOKS.ENTRY_POINT
    assert "LICENSE" in files
    assert "Apache License" in files["LICENSE"].read_text(encoding="utf-8")
    assert any(path.startswith("output/chtml/fonts/woff-v2/") for path in files)
    assert "input/tex/extensions/ams.js" in files  # what \boldsymbol & co. load on demand
    assert all(source.is_file() for source in files.values())
    # The other bundles of MathJax's top folder stay out of the site.
    assert "tex-svg.js" not in files
    assert "tex-mml-chtml.js" not in files


def test_without_the_package_the_build_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from mkdocs.exceptions import PluginError

    def missing(name: str) -> Any:
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(HOOKS.resources, "files", missing)
    with pytest.raises(PluginError, match=r"django-static-mathjax.*pip install -r requirements"):
        HOOKS.mathjax_folder()


def test_a_mathjax_package_without_mathjax_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mkdocs.exceptions import PluginError

    monkeypatch.setattr(HOOKS.resources, "files", lambda name: tmp_path)
    with pytest.raises(PluginError, match=r"holds no tex-chtml.js"):
        HOOKS.mathjax_folder()


def _css_rules(css: str) -> list[tuple[str, str]]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    return [(s.strip(), body) for s, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css)]


def test_code_blocks_scroll_instead_of_breaking_inside_a_token() -> None:
    rules = _css_rules(EXTRA_CSS)
    for selector, body in rules:
        assert not re.search(r"overflow-wrap:\s*anywhere|word-break:\s*break-all", body), selector
        if "pre" in selector:
            assert not re.search(r"white-space:\s*pre-(wrap|line)", body), selector
    (code_block,) = (body for selector, body in rules if selector == ".md-typeset pre > code")
    assert re.search(r"white-space:\s*pre;", code_block)


def test_the_table_of_contents_does_not_break_names_inside_a_word() -> None:
    script = (ROOT / "docs" / "javascripts" / "line-breaks.js").read_text(encoding="utf-8")
    assert "javascripts/line-breaks.js" in _listed("extra_javascript")
    assert ".md-nav--secondary .md-ellipsis" in script  # <wbr> after "_" and "." only
    toc = [body for selector, body in _css_rules(EXTRA_CSS) if "md-ellipsis" in selector]
    assert toc
    assert all("anywhere" not in body for body in toc)


# ---- the home page ------------------------------------------------------------------------

STEPS = ["Install", "Quickstart", "Your own folder", "Predict", "Show it"]


def test_the_home_page_walks_from_install_to_the_demo() -> None:
    headings = re.findall(r"^### \d\. (.+)$", INDEX, re.MULTILINE)
    assert [next(s for s in STEPS if h.startswith(s)) for h in headings] == STEPS, headings
    links = set(re.findall(r"\]\(([\w-]+\.md)(?:#[\w-]+)?\)", INDEX))
    for page in links:
        assert (ROOT / "docs" / page).is_file(), page
    assert {"training.md", "predict.md", "cli.md", "data.md"} <= links


def _shell_lines(markdown: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", markdown, re.DOTALL)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]


def test_every_command_on_the_home_page_parses() -> None:
    lines = _shell_lines(INDEX)
    commands = [shlex.split(line) for line in lines if line.startswith("vitlib ")]
    assert [words[1] for words in commands][:3] == ["train", "train", "finetune"]
    parser = build_parser()
    for words in commands:
        parser.parse_args(words[1:])  # a CommandLineError names any stale flag
    inline = re.findall(r"`(vitlib (?:train|predict|finetune|evaluate) [^`]+)`", INDEX)
    for line in inline:
        parser.parse_args(shlex.split(line)[1:])
    examples = re.findall(r"`python (examples/\w+\.py)([^`]*)`", INDEX)
    assert examples
    for path, arguments in examples:
        module = load_module(ROOT / path, Path(path).stem)
        module.parse_args(shlex.split(arguments))


# ---- the built site, offline --------------------------------------------------------------


class _References(HTMLParser):
    """The scripts, stylesheets and images a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.loaded.append(str(found["src"]))
        elif tag == "link" and found.get("rel") in {"stylesheet", "modulepreload"}:
            self.loaded.append(str(found.get("href")))
        elif tag == "img" and found.get("src"):
            self.loaded.append(str(found["src"]))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [str(mkdocs), "build", "--no-strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    return out


@pytest.mark.slow
def test_every_page_loads_only_files_of_the_site(site: Path) -> None:
    # 404.html is only ever served by a web server, at any path: its links start at the root.
    pages = sorted(page for page in site.rglob("*.html") if page.name != "404.html")
    assert len(pages) >= 10
    for page in pages:
        parser = _References()
        parser.feed(page.read_text(encoding="utf-8"))
        for reference in parser.loaded:
            assert not re.match(r"(https?:)?//", reference), f"{page.name} loads {reference}"
            target = (page.parent / reference.split("#")[0].split("?")[0]).resolve()
            assert target.is_file(), f"{page.name} loads {reference}, which the site lacks"


@pytest.mark.slow
def test_the_equations_are_typeset_by_the_mathjax_in_the_site(site: Path) -> None:
    page = (site / "architecture" / "index.html").read_text(encoding="utf-8")
    assert page.count('class="arithmatex"') >= 4  # eq. 1-4, for MathJax to typeset
    assert f'src="../{MATHJAX_ENTRY}"' in page
    mathjax = site / HOOKS.SITE_FOLDER
    assert (mathjax / HOOKS.ENTRY_POINT).stat().st_size > 100_000
    assert list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert (mathjax / "LICENSE").is_file()


@pytest.mark.slow
def test_page_links_are_folders_that_the_site_opened_from_disk_follows(site: Path) -> None:
    """Pages link to folders (``training/``), as published; opened from disk a folder shows its
    listing, so javascripts/file-links.js points those links at the folder's index.html."""
    index = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="training/"' in index
    assert (site / "training" / "index.html").is_file()
    assert 'src="javascripts/file-links.js"' in index
    script = (ROOT / "docs" / "javascripts" / "file-links.js").read_text(encoding="utf-8")
    assert 'window.location.protocol !== "file:"' in script  # served sites are left alone


@pytest.mark.slow
def test_every_cross_reference_became_a_link(site: Path) -> None:
    """A ``[`name`][vitlib.x]`` whose target no API section documents is left as text by the
    build (``--strict`` does not fail on it): the reader sees the brackets."""
    left = {
        f"{page.relative_to(site)}: {match}"
        for page in site.rglob("*.html")
        for match in re.findall(r"\]\[vitlib\.[\w.]+\]", page.read_text(encoding="utf-8"))
    }
    assert not left, f"cross-references without a target: {sorted(left)[:10]}"
