"""MkDocs hooks (``hooks:`` in mkdocs.yml): serve MathJax from the built site itself.

The equations of the docs are typeset by MathJax in the browser. Instead of loading it from a
CDN (raw TeX without a network, e.g. a site opened from disk), the build copies MathJax 3 from
the Python package ``django-static-mathjax`` (pinned in requirements-dev.txt; it ships the
unmodified MathJax distribution under the Apache 2.0 licence and has no dependencies) into
``javascripts/mathjax/`` of the site, licence included: the entry point ``tex-chtml.js`` and the
folders of what it loads on demand (TeX extensions, fonts, the menu's renderers and
accessibility parts). mkdocs.yml lists ``javascripts/mathjax/tex-chtml.js``.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Final

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

#: Where MathJax goes in the site; mkdocs.yml's extra_javascript names the entry point in it.
SITE_FOLDER: Final = "javascripts/mathjax"
#: The MathJax component the pages load: TeX input, HTML+CSS output, the menu.
ENTRY_POINT: Final = "tex-chtml.js"
#: The package on PyPI and the folder of MathJax's browser build inside it.
PACKAGE: Final = "django-static-mathjax"
_BROWSER_BUILD: Final = ("static", "mathjax", "es5")


def mathjax_folder() -> Path:
    """The browser build of MathJax (``es5/``) inside the installed package.

    Raises:
        PluginError: The package is not installed, or holds no ``tex-chtml.js``.
    """
    try:
        root: Traversable = resources.files("mathjax")
    except ModuleNotFoundError:
        raise PluginError(
            f"MathJax for the docs comes from the Python package {PACKAGE}, which is not "
            f"installed; run: pip install -r requirements-dev.txt"
        ) from None
    folder = Path(str(root.joinpath(*_BROWSER_BUILD)))
    if not (folder / ENTRY_POINT).is_file():
        raise PluginError(
            f"{folder} holds no {ENTRY_POINT}: the installed 'mathjax' package is not "
            f"{PACKAGE}; reinstall it with: pip install -r requirements-dev.txt"
        )
    return folder


def mathjax_files(folder: Path) -> list[tuple[str, Path]]:
    """``(path in the site, file)`` of each MathJax file the site serves: the entry point, the
    folders it loads from on demand, and the licence (one folder above ``es5/``)."""
    chosen = [(ENTRY_POINT, folder / ENTRY_POINT), ("LICENSE", folder.parent / "LICENSE")]
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and len(relative.parts) > 1:  # top-level files are other bundles
            chosen.append((relative.as_posix(), path))
    return chosen


def on_files(files: Files, *, config: MkDocsConfig) -> Files:
    """Add MathJax's files to the site (an MkDocs event)."""
    for site_path, source in mathjax_files(mathjax_folder()):
        files.append(File.generated(config, f"{SITE_FOLDER}/{site_path}", abs_src_path=str(source)))
    return files
