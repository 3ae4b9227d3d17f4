"""vitlib.evaluate_model and vitlib evaluate: the numbers of training's evaluate, and more."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

import vitlib
from vitlib.analysis.plots import MAX_CONFUSION_CLASSES
from vitlib.checkpoints import NonFiniteWeightsWarning, attach_metadata
from vitlib.cli import main
from vitlib.data import ImageFolderDataset, Preprocessing
from vitlib.errors import DataError, InputTypeError
from vitlib.inference.labelled_data import labelled_data
from vitlib.training import NonFiniteEvalLossError, evaluate

from .helpers import tiny_vit
from .image_helpers import COLOURS, write_image, write_image_folder

LABELS = ["blue", "green", "red"]  # the sorted class folders of COLOURS


def _model(seed: int = 0) -> vitlib.ViT:
    model = tiny_vit(seed=seed, num_classes=3)
    attach_metadata(model, labels=LABELS, preprocessing=Preprocessing.imagenet(16))
    return model


def test_loss_and_accuracy_equal_training_evaluate_on_the_same_loader() -> None:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(37, 3, 16, 16, generator=generator), torch.arange(37) % 5)
    loader = DataLoader(data, batch_size=8)
    model = tiny_vit()
    report = vitlib.evaluate_model(model, loader)
    expected = evaluate(model, loader)
    assert (report.loss, report.accuracy, report.samples) == (
        expected.loss,
        expected.accuracy,
        expected.samples,
    )


def test_an_image_folder_gives_the_numbers_of_evaluate_on_its_test_loader(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=3)
    model = _model()
    report = vitlib.evaluate_model(model, folder, batch_size=4)
    dataset = ImageFolderDataset(folder, Preprocessing.imagenet(16).transform())
    expected = evaluate(model, DataLoader(dataset, batch_size=4))
    assert (report.loss, report.accuracy) == (expected.loss, expected.accuracy)
    matrix = torch.tensor(report.confusion_matrix)
    assert int(matrix.sum()) == report.samples == 9
    assert matrix.sum(dim=1).tolist() == [3, 3, 3]
    assert report.accuracy == pytest.approx(float(matrix.diag().sum()) / 9)


def test_a_folder_decoded_by_workers_gives_the_same_report(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=3)
    model = _model()
    alone = vitlib.evaluate_model(model, folder, batch_size=2, num_workers=0)
    helped = vitlib.evaluate_model(model, folder, batch_size=2, num_workers=2)
    assert helped.to_dict() == alone.to_dict()
    loader = labelled_data(model, folder, batch_size=2, strict=False, num_workers=2)[1]
    assert isinstance(loader, DataLoader)
    assert loader.num_workers == 2
    with pytest.raises(ValueError, match="num_workers must be an int >= 0"):
        vitlib.evaluate_model(model, folder, num_workers=-1)
    with pytest.raises(ValueError, match="num_workers must be an int >= 0"):
        vitlib.evaluate_model(model, "digits", num_workers=-2)  # checked for any data


def test_per_class_metrics_top_k_and_mistakes_follow_their_definitions() -> None:
    logits = torch.tensor([[3.0, 0, 0], [0, 3, 0], [0, 2, 3], [2, 3, 0], [0, 0, 3], [3, 2, 0]])
    labels = torch.tensor([0, 1, 1, 0, 2, 1])

    class Fixed(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return logits[images[:, 0, 0, 0].long()]

    model = tiny_vit(num_classes=3)
    model.forward = Fixed().forward  # type: ignore[method-assign]
    images = torch.arange(6).float().view(6, 1, 1, 1).expand(6, 3, 16, 16)
    report = vitlib.evaluate_model(model, DataLoader(TensorDataset(images, labels), batch_size=4))
    # predictions 0 1 2 1 2 0 against 0 1 1 0 2 1: rows true, columns predicted
    assert report.confusion_matrix == ((1, 1, 0), (1, 1, 1), (0, 0, 1))
    assert [(cell.true, cell.predicted, cell.count) for cell in report.confusion] == [
        ("0", "0", 1), ("0", "1", 1), ("1", "0", 1), ("1", "1", 1), ("1", "2", 1), ("2", "2", 1),
    ]  # fmt: skip
    first, second, third = report.per_class
    assert (first.precision, first.recall, first.support) == (0.5, 0.5, 2)
    assert second.precision == 0.5
    assert second.recall == pytest.approx(1 / 3)
    assert second.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert (third.precision, third.recall) == (0.5, 1.0)
    assert report.accuracy == 0.5
    assert (report.top_k, report.top_k_accuracy) == (None, None), "3 classes: top-5 is always 1"
    assert sorted(mistake.source for mistake in report.mistakes) == [
        "sample 2",
        "sample 3",
        "sample 5",
    ]
    assert report.mistakes[0].confidence >= report.mistakes[-1].confidence


def test_a_hand_built_folder_with_some_classes_is_matched_by_name(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=2)
    shutil.rmtree(folder / "blue")
    report = vitlib.evaluate_model(_model(), folder)
    assert report.labels == tuple(LABELS)
    support = {metrics.label: metrics.support for metrics in report.per_class}
    predicted = {cell.predicted for cell in report.confusion}
    assert support == {"green": 2, "red": 2, **({"blue": 0} if "blue" in predicted else {})}
    (folder / "purple").mkdir()
    shutil.copy(folder / "red" / "0.png", folder / "purple" / "0.png")
    with pytest.raises(DataError, match=r"class folders \['purple'\] that the model does not know"):
        vitlib.evaluate_model(_model(), folder)


def test_digits_need_a_digits_model() -> None:
    with pytest.raises(DataError, match="1-channel images and 10 classes"):
        vitlib.evaluate_model(_model(), "digits")


def test_evaluate_command_writes_the_report_and_pictures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=2)
    checkpoint = vitlib.save_pretrained(_model(), tmp_path / "run" / "best")
    out = tmp_path / "evaluation"
    assert (
        main(["evaluate", str(checkpoint.parent), "--data", str(folder), "--output-dir", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "accuracy" in printed
    assert "precision" in printed
    report = json.loads((out / "report.json").read_text())
    assert report == {
        **vitlib.evaluate_model(checkpoint, folder).to_dict(),
        "confusion_matrix_png": "confusion_matrix.png",
        **({"mistakes_png": "mistakes.png"} if report["most_confident_mistakes"] else {}),
    }
    assert (out / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert main(["evaluate", str(checkpoint), "--data", str(folder), "--output-dir", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    argv = ["evaluate", str(checkpoint), "--data", str(folder), "--output-dir", str(out)]
    assert main([*argv, "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 6
    assert COLOURS  # the folder's classes


def test_evaluate_mistakes_picture_is_drawn_when_there_are_mistakes(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=2)
    report = vitlib.evaluate_model(_model(), folder)
    assert report.mistakes, "an untrained model makes mistakes"
    report.save(tmp_path / "out")
    assert (tmp_path / "out" / "mistakes.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(FileExistsError):
        report.save(tmp_path / "out")


# ---- the report costs what the classes present cost (E30) ---------------------------------------


def _fixed_model(logits: torch.Tensor) -> vitlib.ViT:
    """A tiny ViT whose output for image ``i`` (pixel value ``i``) is ``logits[i]``."""

    class Fixed(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return logits[images[:, 0, 0, 0].long()]

    model = tiny_vit(num_classes=logits.shape[1])
    model.forward = Fixed().forward  # type: ignore[method-assign]
    return model


def _indexed_images(count: int) -> torch.Tensor:
    return torch.arange(count).float().view(count, 1, 1, 1).expand(count, 3, 16, 16)


def _evaluate_pairs(truth: list[int], guesses: list[int], classes: int) -> vitlib.EvaluationReport:
    """The report of a model that predicts ``guesses[i]`` for sample ``i`` of class
    ``truth[i]``."""
    logits = torch.nn.functional.one_hot(torch.tensor(guesses), classes).float() * 5
    loader = DataLoader(TensorDataset(_indexed_images(len(truth)), torch.tensor(truth)), 4)
    return vitlib.evaluate_model(_fixed_model(logits), loader)


def test_a_10000_class_head_on_2_images_gives_a_report_of_a_few_kilobytes(
    tmp_path: Path,
) -> None:
    """benchmarks/evaluate_many_classes.py times it; here the sizes, which follow the data."""
    model = tiny_vit(num_classes=10_000)
    attach_metadata(model, labels=[f"class_{index:05d}" for index in range(10_000)])
    folder = tmp_path / "images"
    for name in ("class_00003", "class_09999"):
        write_image(folder / name / "0.png", (200, 30, 30), (20, 20), seed=len(name))
    report = vitlib.evaluate_model(model, folder)
    assert report.samples == 2
    assert len(report.per_class) <= 4  # the 2 true classes and at most 2 predicted ones
    assert {"class_00003", "class_09999"} <= set(report.present_labels)
    assert sum(cell.count for cell in report.confusion) == 2
    assert len(report.confusion_matrix) == len(report.per_class)
    assert len(json.dumps(report.to_dict())) < 4_000
    assert len(report.summary().splitlines()) == 3 + len(report.per_class)
    report.save(tmp_path / "out")
    assert (tmp_path / "out" / "report.json").stat().st_size < 8_000
    assert (tmp_path / "out" / "confusion_matrix.png").stat().st_size < 100_000


@given(pairs=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=12))
def test_per_class_metrics_and_confusion_follow_the_definitions_over_the_classes_present(
    pairs: list[tuple[int, int]],
) -> None:
    """Each class with samples or predictions gets its precision, recall and F1 as defined
    from the dense matrix; a class with neither is not listed; the counts sum to the samples."""
    truth, guesses = [true for true, _ in pairs], [guess for _, guess in pairs]
    report = _evaluate_pairs(truth, guesses, classes=7)
    dense = torch.zeros(7, 7, dtype=torch.int64)
    for true, guess in pairs:
        dense[true, guess] += 1
    present = [index for index in range(7) if dense[index].sum() or dense[:, index].sum()]
    assert report.present_labels == tuple(str(index) for index in present)
    assert report.confusion_matrix == tuple(map(tuple, dense[present][:, present].tolist()))
    assert [(cell.true, cell.predicted) for cell in report.confusion] == [
        (str(true), str(guess)) for true, guess in dense.nonzero().tolist()
    ]
    for metrics, index in zip(report.per_class, present, strict=True):
        hits = int(dense[index, index])
        predicted, support = int(dense[:, index].sum()), int(dense[index].sum())
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        assert (metrics.precision, metrics.recall, metrics.support) == (precision, recall, support)
        assert metrics.f1 == pytest.approx(
            2 * precision * recall / (precision + recall) if hits else 0.0
        )
    with_samples = [metrics.f1 for metrics in report.per_class if metrics.support]
    assert report.macro_f1 == pytest.approx(sum(with_samples) / len(with_samples))


def test_above_100_classes_present_the_confusion_picture_is_skipped_with_its_reason(
    tmp_path: Path,
) -> None:
    classes = MAX_CONFUSION_CLASSES + 1
    report = _evaluate_pairs(list(range(classes)), list(range(classes)), classes=classes)
    assert len(report.per_class) == classes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report.save(tmp_path / "out")
    assert [str(warning.message) for warning in caught] == [
        f"confusion_matrix.png not drawn: {classes} classes are present, more than the "
        f"{MAX_CONFUSION_CLASSES} a confusion picture shows legibly; the counts are in 'confusion'"
    ]
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "confusion_matrix_png" not in written
    assert written["confusion_matrix_png_skipped"].startswith(f"{classes} classes are present")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["report.json"]


def test_a_new_save_removes_the_pictures_the_new_report_does_not_have(tmp_path: Path) -> None:
    """E28: re-saving with overwrite leaves no stale mistakes.png or confusion_matrix.png."""
    out = tmp_path / "out"
    _evaluate_pairs([0, 1, 2], [1, 1, 2], classes=3).save(out)
    assert {"mistakes.png", "confusion_matrix.png"} <= {path.name for path in out.iterdir()}
    _evaluate_pairs([0, 1, 2], [0, 1, 2], classes=3).save(out, overwrite=True)
    assert sorted(path.name for path in out.iterdir()) == ["confusion_matrix.png", "report.json"]
    many = MAX_CONFUSION_CLASSES + 1
    with pytest.warns(UserWarning, match="not drawn"):
        _evaluate_pairs(list(range(many)), list(range(many)), classes=many).save(
            out, overwrite=True
        )
    assert sorted(path.name for path in out.iterdir()) == ["report.json"]


# ---- what data is read (E05, CE08) ---------------------------------------------------------------


def test_a_folder_holding_only_test_is_evaluated_on_its_test_split(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_image_folder(root / "test", per_class=2)
    report = vitlib.evaluate_model(_model(), root)
    assert report.samples == 6
    assert all(mistake.source.startswith(str(root / "test")) for mistake in report.mistakes)


def test_a_folder_holding_train_and_test_is_evaluated_on_test_only(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_image_folder(root / "train", per_class=3)
    write_image_folder(root / "test", per_class=1)
    assert vitlib.evaluate_model(_model(), root).samples == 3


def test_a_class_named_test_is_a_class_folder_not_a_split(tmp_path: Path) -> None:
    model = tiny_vit(num_classes=2)
    attach_metadata(model, labels=["test", "other"], preprocessing=Preprocessing.imagenet(16))
    root = tmp_path / "data"
    write_image(root / "test" / "0.png", (200, 30, 30), (20, 20), seed=0)
    report = vitlib.evaluate_model(model, root)
    assert report.samples == 1
    assert [
        (metrics.label, metrics.support) for metrics in report.per_class if metrics.support
    ] == [("test", 1)]


def test_a_test_split_beside_class_folders_is_a_class_the_model_does_not_know(
    tmp_path: Path,
) -> None:
    root = write_image_folder(tmp_path / "data", per_class=1)
    write_image_folder(root / "test", per_class=1)
    with pytest.raises(DataError, match=r"class folders \['test'\] that the model does not know"):
        vitlib.evaluate_model(_model(), root)


def test_the_command_evaluates_a_folder_holding_only_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CE08."""
    checkpoint = vitlib.save_pretrained(_model(), tmp_path / "model")
    write_image_folder(tmp_path / "data" / "test", per_class=1)
    argv = ["evaluate", str(checkpoint), "--data", str(tmp_path / "data")]
    assert main([*argv, "--output-dir", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 3


# ---- non-finite outputs (E23, CE12, CE13) --------------------------------------------------------


def test_non_finite_outputs_are_refused_as_fit_refuses_them() -> None:
    images = torch.full((4, 3, 16, 16), float("nan"))
    with pytest.raises(NonFiniteEvalLossError, match="became nan in evaluation batch 0"):
        vitlib.evaluate_model(_model(), [(images, torch.tensor([0, 1, 2, 0]))])


def test_the_command_prints_one_line_and_writes_no_report_for_non_finite_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _model()
    head = model.get_submodule("head")
    assert isinstance(head, torch.nn.Linear)
    with torch.no_grad():
        head.bias.fill_(float("inf"))
    checkpoint = vitlib.save_pretrained(model, tmp_path / "model")
    folder = write_image_folder(tmp_path / "images", per_class=1)
    out = tmp_path / "out"
    argv = ["evaluate", str(checkpoint), "--data", str(folder), "--output-dir", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWeightsWarning)
        assert main([*argv, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "loss became nan" in captured.err
    assert not (out / "report.json").exists()


@given(pairs=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=8))
def test_every_report_is_strict_json(pairs: list[tuple[int, int]]) -> None:
    report = _evaluate_pairs([true for true, _ in pairs], [guess for _, guess in pairs], 4)
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert json.loads(text)["samples"] == len(pairs)


# ---- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [123, None, b"images"], ids=["int", "None", "bytes"])
def test_data_of_another_kind_is_refused_naming_the_kinds(data: object) -> None:
    with pytest.raises(InputTypeError, match=r"data must be 'digits', a folder path .* got "):
        vitlib.evaluate_model(_model(), data)  # type: ignore[arg-type]


def test_an_array_is_read_as_a_loader_and_refused_as_one() -> None:
    """Not compared with "digits" element by element (numpy's ambiguous truth value)."""
    with pytest.raises(
        TypeError, match=r"the loader yielded a ndarray; expected \(images, labels\)"
    ):
        vitlib.evaluate_model(_model(), np.zeros((2, 3, 16, 16), dtype=np.float32))


def test_a_dataset_of_samples_is_batched_by_batch_size() -> None:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(10, 3, 16, 16, generator=generator), torch.arange(10) % 3)
    report = vitlib.evaluate_model(_model(), data, batch_size=4)
    expected = vitlib.evaluate_model(_model(), DataLoader(data, batch_size=4))
    assert report.to_dict() == expected.to_dict()


def test_strict_and_overwrite_must_be_bools(tmp_path: Path) -> None:
    """A string such as "no" would count as true: replacing a report the user meant to keep."""
    folder = write_image_folder(tmp_path / "images", per_class=1)
    with pytest.raises(InputTypeError, match=r"strict must be a bool .* got 'yes'"):
        vitlib.evaluate_model(_model(), folder, strict="yes")  # type: ignore[arg-type]
    report = vitlib.evaluate_model(_model(), folder)
    out = report.save(tmp_path / "out")
    (out / "report.json").write_text("mine")
    with pytest.raises(InputTypeError, match=r"overwrite must be a bool .* got 'no'"):
        report.save(out, overwrite="no")  # type: ignore[arg-type]
    assert (out / "report.json").read_text() == "mine"


# ---- top-k, where the report goes, and what it says about the data (issue 20) ----------------


@pytest.mark.parametrize(("classes", "top_k"), [(3, None), (5, None), (6, 5)])
def test_top_5_is_reported_only_for_more_than_5_classes(classes: int, top_k: int | None) -> None:
    """With 5 classes or fewer the true class is always among the 5 most probable."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(12, 3, 16, 16, generator=generator)
    loader = DataLoader(TensorDataset(images, torch.arange(12) % classes), batch_size=5)
    report = vitlib.evaluate_model(tiny_vit(num_classes=classes), loader)
    assert report.top_k == top_k
    assert (report.top_k_accuracy is None) == (top_k is None)
    assert ("top-5" in report.summary()) == (top_k is not None)
    assert report.to_dict()["top_k"] == top_k


TRAIN_TINY = [
    "--preset", "ViT-Ti/4", "--image-size", "8", "--layers", "1", "--batch-size", "4",
    "--epochs", "1", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/ (train, valid, test), a run choosing on valid/ and one choosing on test/."""
    root = tmp_path_factory.mktemp("runs")
    for split, count in (("train", 4), ("valid", 1), ("test", 2)):
        write_image_folder(root / "data" / split, per_class=count, seed=len(split))
    write_image_folder(root / "no_valid" / "train", per_class=4)
    write_image_folder(root / "no_valid" / "test", per_class=2, seed=9)
    for data, run, flags in (
        ("data", "valid_run", []),
        ("no_valid", "test_run", ["--val-split", "0"]),
    ):
        argv = ["train", "--data", str(root / data), *TRAIN_TINY, *flags]
        assert main([*argv, "--output-dir", str(root / run)]) == 0
    return root


def _caveat(run: Path | vitlib.ViT, data: Path) -> str | None:
    return vitlib.evaluate_model(run, data, batch_size=4).caveat


def test_the_report_says_when_the_data_chose_or_trained_the_model(trained_runs: Path) -> None:
    data, run = trained_runs / "data", trained_runs / "valid_run"
    chose = _caveat(run, data / "valid")
    assert chose is not None
    assert chose.startswith(f"{(data / 'valid').resolve()} chose this model")
    assert "(valid/), so this accuracy is optimistic" in chose
    trained = _caveat(run / "best", data / "train")
    assert trained is not None
    assert "is the training data of the run" in trained
    assert _caveat(run, data) is None, "its test/ split neither chose nor trained it"
    assert _caveat(run, data / "test") is None
    on_test = _caveat(trained_runs / "test_run", trained_runs / "no_valid")
    assert on_test is not None
    assert "(test/, itself), so this accuracy is optimistic" in on_test
    assert _caveat(vitlib.load_pretrained(run), data / "valid") is None, "no run, no record"


def test_evaluate_prints_the_caveat_and_writes_into_the_run(
    trained_runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained_runs / "test_run", trained_runs / "no_valid"
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"note: {(data / 'test').resolve()} chose this model")
    assert f"report in {run / 'evaluation'}: " in out
    report = json.loads((run / "evaluation" / "report.json").read_text())
    assert report["caveat"] == out.splitlines()[0].removeprefix("note: ")
    assert main(["evaluate", str(run / "best"), "--data", str(data)]) == 0
    assert f"report in {run / 'evaluation-2'}: " in capsys.readouterr().out, "never replaced"
    before = (run / "evaluation" / "report.json").read_text()
    assert main(["evaluate", str(run), "--data", str(data / "test"), "--overwrite"]) == 0
    assert f"report in {run / 'evaluation-2'}: " in capsys.readouterr().out, "the latest"
    assert (run / "evaluation" / "report.json").read_text() == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("eval")) == [
        "evaluation",
        "evaluation-2",
    ]


def test_a_model_outside_a_run_reports_into_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = vitlib.save_pretrained(_model(), tmp_path / "model")
    folder = write_image_folder(tmp_path / "images", per_class=1)
    monkeypatch.chdir(tmp_path)
    for expected in ("evaluation", "evaluation-2"):
        assert main(["evaluate", str(checkpoint), "--data", str(folder)]) == 0
        assert f"report in {expected}: " in capsys.readouterr().out


def test_a_run_of_an_earlier_vitlib_chose_on_its_test_split(
    trained_runs: Path, tmp_path: Path
) -> None:
    run = tmp_path / "earlier"
    shutil.copytree(trained_runs / "valid_run", run)
    settings = json.loads((run / "settings.json").read_text())
    del settings["model_selection"]  # earlier runs did not record it: they chose on test/
    (run / "settings.json").write_text(json.dumps(settings))
    caveat = _caveat(run, trained_runs / "data")
    assert caveat is not None
    assert "(test/, itself), so this accuracy is optimistic" in caveat


def test_digits_chosen_on_their_test_split_are_flagged_when_evaluated_on_it(
    tmp_path: Path,
) -> None:
    argv = ["train", "--layers", "1", "--epochs", "1", "--max-steps", "1", "--no-progress"]
    for run, flags in (("split", []), ("no_split", ["--val-split", "0"])):
        assert main([*argv, *flags, "--output-dir", str(tmp_path / run)]) == 0
    assert vitlib.evaluate_model(tmp_path / "split", "digits").caveat is None
    caveat = vitlib.evaluate_model(tmp_path / "no_split", "digits").caveat
    assert caveat is not None
    assert "chose its best epoch on the digits test split" in caveat


def test_evaluate_progress_counts_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vitlib.training import progress

    data = write_image_folder(tmp_path / "data", per_class=3)
    monkeypatch.setattr(progress, "is_terminal", lambda stream: True)
    vitlib.evaluate_model(_model(), data, batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert "9/9" in err, "images, not the 3 batches"
    assert "img/s" in err
    vitlib.evaluate_model(_model(), data, batch_size=4)
    assert capsys.readouterr().err == "", "off by default"


def test_kept_mistakes_hold_their_own_image_not_their_whole_batch() -> None:
    """A view of one image keeps its batch's storage alive: 16 kept mistakes from 16 batches of
    224-pixel images would hold 16 whole batches (memory growing with the images evaluated)."""
    import importlib

    tally = importlib.import_module("vitlib.inference.evaluate")._ReportTally(4, max_mistakes=3)
    for batch in range(5):
        images = torch.rand(8, 3, 6, 6)
        targets = torch.zeros(8, dtype=torch.long)
        logits = torch.zeros(8, 4)
        logits[:, 1] = torch.arange(8) + batch  # every image wrong, later ones more confident
        tally.add(images, targets, logits)
        kept_images = [item[4] for item in tally.kept]
        assert all(image.untyped_storage().nbytes() == 3 * 6 * 6 * 4 for image in kept_images)
        assert not any(image.data_ptr() == images.data_ptr() for image in kept_images)
    assert [item[1] for item in tally.kept] == [39, 31, 38]  # most confident; ties: earliest
    assert torch.equal(tally.kept[0][4], images[7])
