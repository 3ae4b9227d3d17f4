"""Every shell block of README.md and docs/ runs as written, in order, in a fresh folder.

Each Markdown file's ``bash`` blocks are one sequence: a later command may use what an earlier
one wrote (``vitlib train`` makes the run that ``vitlib predict`` reads), so they run one after
the other, in a fresh copy of the repository where nothing has run yet. Three things are
changed, each for a reason stated here and nowhere else:

- the photos and folders the docs assume the reader has (``data/sports_mini``,
  ``my_photo.jpg``...) are generated first, tiny;
- a checkpoint that would be downloaded (``torchvision:vit_b_16``) is replaced by a local tiny
  model, since the tests have no network;
- training is cut to one epoch (``--resume`` to two), since the lesson is the sequence, not the
  accuracy (the learning tests and benchmarks measure that).

A command that cannot run here is listed in `SKIPPED` with why; a new block is run unless it
is listed, so a docs change cannot leave a broken sequence unnoticed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

import vitlib
from tests.helpers import ROOT
from tests.image_helpers import write_image, write_image_folder

pytestmark = pytest.mark.slow

#: The documents whose shell blocks run.
DOCUMENTS: Final = (
    "README.md",
    *sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md")),
)

#: Commands (by their start) that do not run here, and why.
SKIPPED: Final[dict[str, str]] = {
    "python3 -m venv .venv && .venv/bin/pip install -q -r requirements-dev.txt": (
        "the test command: .ci/run runs it, this test is part of it"
    ),
    "git clone": "needs the network; the copy of the repository stands for the clone",
    "python3 -m venv .venv && . .venv/bin/activate": "a shell's own activation (index.md)",
    'pip install ".[data,plots,progress]"': "the tests run in an environment that has it",
    'pip install "vitlib[': "installs the released package from PyPI (not published here)",
    "bash benchmarks/setup_peers_venv.sh": "builds a second venv with timm and torchvision",
    "/work/peers-venv/bin/python": "needs the peers' venv (benchmarks/setup_peers_venv.sh)",
    "python benchmarks/gpu.py --compile": "needs a GPU",
    "python benchmarks/digits_learning_target.py": (
        "a 90-second benchmark, run by hand; tests/test_benchmarks.py runs its code"
    ),
    "python benchmarks/photos.py": (
        "a 13-minute benchmark (or your own photos), run by hand; tests/test_benchmarks.py runs "
        "its --quick mode"
    ),
    "torchrun --nproc_per_node 8": "needs 8 GPUs",
    "torchrun --nnodes 2": "needs two machines",
    "vitlib demo runs/shapes --port": "starts a server (tests/test_demo.py starts it)",
    "vitlib demo runs/shapes #": "starts a server (tests/test_demo.py starts it)",
    "cd shapes-demo": "the exported app's server (tests/test_demo.py starts it)",
    "pip install -r requirements.txt && python app.py": "a server (tests/test_demo.py)",
    "GRADIO_SERVER_NAME=": "a server (tests/test_demo.py)",
}

#: Downloads, replaced by the local tiny model `local_checkpoint` writes.
DOWNLOADED: Final = ("torchvision:vit_b_16", "hf-hub:google/vit-base-patch16-224")

#: The commands that train, cut to one epoch.
_TRAINING = re.compile(r"(vitlib (train|finetune)|examples/(train_from_scratch|finetune)\.py)\b")


@dataclass(frozen=True)
class Command:
    """One command of a document: its text (continuations joined) and where it is."""

    text: str
    where: str


def shell_commands(document: str) -> list[Command]:
    """The commands of ``document``'s ``bash`` blocks, in order; comments and blank lines out."""
    commands: list[Command] = []
    inside, pending, start = False, "", 0
    for number, line in enumerate((ROOT / document).read_text().splitlines(), 1):
        if line.startswith("```"):
            inside = line.strip() in ("```bash", "```sh", "```shell") if not inside else False
            continue
        if not inside or (not pending and not line.strip()) or line.lstrip().startswith("#"):
            continue
        start = start if pending else number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append(Command(" ".join((pending + line).split()), f"{document}:{start}"))
        pending = ""
    return commands


def skipped(command: str) -> str | None:
    """Why ``command`` does not run here, or ``None``."""
    return next((why for start, why in SKIPPED.items() if command.startswith(start)), None)


def shortened(command: str) -> str:
    """``command`` with its training cut to one epoch (two for ``--resume``)."""
    if not _TRAINING.search(command):
        return command
    code = command.split("#", 1)[0].rstrip()
    epochs = "2" if "--resume" in code.split() else "1"
    if re.search(r"--epochs \d+", code):
        return re.sub(r"--epochs \d+", f"--epochs {epochs}", code)
    if "&&" in code:  # the quickstart: the last command of the chain trains
        head, _, last = code.rpartition("&&")
        return f"{head}&& {last.strip()} --epochs {epochs}"
    return f"{code} --epochs {epochs}"


def test_shell_commands_are_read_whole() -> None:
    assert [c.text for c in shell_commands("docs/training.md") if "nnodes" in c.text] == [
        "torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint "
        "10.0.0.1:29500 --rdzv_id vit-h-run -m vitlib train --parallel fsdp --preset ViT-H/14 "
        "--data /shared/imagenet --image-size 224 --batch-size 32 --bf16 --grad-checkpointing "
        "--output-dir /shared/runs/vit-h"
    ]
    assert shortened("vitlib train --data x --epochs 10  # y") == "vitlib train --data x --epochs 1"
    assert shortened("python examples/train_from_scratch.py --resume --epochs 30") == (
        "python examples/train_from_scratch.py --resume --epochs 2"
    )
    assert shortened("vitlib predict runs/x a.jpg") == "vitlib predict runs/x a.jpg"


def test_every_skip_names_a_command_that_exists() -> None:
    texts = [c.text for document in DOCUMENTS for c in shell_commands(document)]
    unused = [start for start in SKIPPED if not any(text.startswith(start) for text in texts)]
    assert not unused, f"SKIPPED entries no document has any more: {unused}"


def fresh_copy(target: Path) -> Path:
    """The repository's files (tracked and new, not ignored) copied to ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def reader_files(root: Path) -> None:
    """What the docs assume the reader has: photo folders with train/ and test/, labelled
    folders, single photos; every folder with the same three classes."""
    for folder in ("data/sports_mini", "photos", "shapes"):  # 25 a class: probe.md's largest shot
        write_image_folder(root / folder / "train", per_class=25)
        write_image_folder(root / folder / "test", per_class=2, seed=7)
    for folder in ("data/my_labelled_photos", "data/hand_built_folder"):
        write_image_folder(root / folder, per_class=2, seed=11)
    for photo in ("my_photo.jpg", "cat.jpg"):
        write_image(root / photo, (220, 30, 30), (40, 30), seed=3)


def local_checkpoint(root: Path) -> Path:
    """A tiny model at the input size of the downloads it stands for (224 px)."""
    model = vitlib.create_model("ViT-Ti/16", img_size=224, num_transformer_layers=1, num_classes=10)
    return vitlib.save_pretrained(model, root / "downloaded_stand_in")


def runnable(document: str) -> list[Command]:
    """The commands of ``document`` that run here."""
    return [command for command in shell_commands(document) if skipped(command.text) is None]


#: The documents with a command that runs here (the others' are all in `SKIPPED`, with why).
RUN: Final = tuple(document for document in DOCUMENTS if runnable(document))


def test_the_documents_that_run_nothing_are_those_whose_commands_are_all_skipped() -> None:
    quiet = [document for document in DOCUMENTS if document not in RUN]
    assert all(skipped(c.text) for document in quiet for c in shell_commands(document))
    assert "README.md" in RUN
    assert len(RUN) >= 8


@pytest.mark.parametrize("document", RUN)
def test_the_shell_blocks_run_in_order_in_a_fresh_folder(document: str, tmp_path: Path) -> None:
    commands = runnable(document)
    folder = fresh_copy(tmp_path / "repo")
    reader_files(folder)
    stand_in = local_checkpoint(tmp_path)
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    for command in commands:
        text = shortened(command.text)
        for download in DOWNLOADED:
            text = text.replace(download, shlex.quote(str(stand_in)))
        done = subprocess.run(
            ["bash", "-c", text],
            cwd=folder,
            env=environment,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, (
            f"{command.where}: `{command.text}` (run as `{text}`) exited {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
