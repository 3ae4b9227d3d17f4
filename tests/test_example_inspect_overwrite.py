"""examples/inspect_model.py refuses to replace its pictures in the words of its own command line
(``--overwrite``, ``--output-dir``), before any analysis runs, and names the files in the way."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import ROOT, load_module

EXAMPLE = load_module(ROOT / "examples" / "inspect_model.py", "inspect_model_example")
#: A random grey ViT-Ti/4 for 16x16 digits: built in a moment.
ARGUMENTS = ["--preset", "ViT-Ti/4", "--image-size", "16", "--num-images", "2"]


def test_a_picture_in_the_way_is_refused_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = tmp_path / EXAMPLE.ROLLOUT
    taken.write_bytes(b"mine")

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the images were loaded before the refusal")

    monkeypatch.setattr(EXAMPLE, "load_images", never)
    assert EXAMPLE.main([*ARGUMENTS, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{taken} already exists; pass --overwrite" in err
    assert "--output-dir" in err
    assert "overwrite=True" not in err
    assert taken.read_bytes() == b"mine"


def test_every_picture_in_the_way_is_named(tmp_path: Path) -> None:
    model = EXAMPLE.load_model(EXAMPLE.parse_args(ARGUMENTS))
    paths = EXAMPLE.picture_paths(model, tmp_path)
    assert [path.name for path in paths] == [
        EXAMPLE.FILTERS,
        EXAMPLE.POSITIONS,
        EXAMPLE.DISTANCES,
        EXAMPLE.ROLLOUT,
    ]
    for path in paths:
        path.write_bytes(b"")
    with pytest.raises(FileExistsError, match="already exist; pass --overwrite") as refused:
        EXAMPLE.check_free(paths, overwrite=False)
    assert all(str(path) in str(refused.value) for path in paths)
    EXAMPLE.check_free(paths, overwrite=True)  # with the flag: nothing to refuse
    EXAMPLE.check_free([tmp_path / "free.png"], overwrite=False)


@pytest.mark.parametrize(
    ("checkpoint", "folder"),
    [
        (None, "runs/inspect/random"),
        ("runs/digits/best", "runs/inspect/digits-best"),
        ("runs/digits", "runs/inspect/digits"),
        ("torchvision:vit_b_16", "runs/inspect/torchvision-vit_b_16"),
        ("hf-hub:google/vit-base-patch16-224", "runs/inspect/hf-hub-google-vit-base-patch16-224"),
        ("../elsewhere/model.safetensors", "runs/inspect/elsewhere-model.safetensors"),
    ],
)
def test_each_model_gets_its_own_default_folder(checkpoint: str | None, folder: str) -> None:
    """Two commands of docs/analysis.md in a row (a random model, then a run) must not meet
    each other's pictures."""
    argv = ARGUMENTS if checkpoint is None else [*ARGUMENTS, "--checkpoint", checkpoint]
    assert EXAMPLE.parse_args(argv).output_dir == Path(folder)
    given = EXAMPLE.parse_args([*argv, "--output-dir", "mine"])
    assert given.output_dir == Path("mine")
