"""Class names and preprocessing travel with a model: config.json, Hugging Face, timm, runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import vitlib
from vitlib.checkpoints import ModelMetadata, attach_metadata, model_metadata
from vitlib.data import Preprocessing
from vitlib.errors import CheckpointError, ConfigError

from .helpers import tiny_vit

LABELS = ["zebra", "apple", "mango", "kiwi", "fig"]  # deliberately not sorted


def _labelled(**changes: object) -> vitlib.ViT:
    model = tiny_vit(**changes)  # type: ignore[arg-type]
    attach_metadata(model, labels=LABELS, preprocessing=Preprocessing.imagenet(16))
    return model


def _edit_config(folder: Path, **entries: object) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data.update(entries)
    path.write_text(json.dumps(data))


def test_save_pretrained_writes_labels_and_preprocessing_as_format_2(tmp_path: Path) -> None:
    vitlib.save_pretrained(_labelled(), tmp_path / "ck")
    data = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert data["format_version"] == 2
    assert data["labels"] == LABELS
    assert data["preprocessing"] == {
        "image_size": [16, 16],
        "channels": 3,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize": "center_crop",
        "crop_ratio": 0.875,
        "interpolation": "bilinear",
    }


def test_label_order_survives_save_load_hf_export_load(tmp_path: Path) -> None:
    vitlib.save_pretrained(_labelled(), tmp_path / "vitlib")
    loaded = vitlib.load_pretrained(tmp_path / "vitlib")
    assert model_metadata(loaded) == ModelMetadata(tuple(LABELS), Preprocessing.imagenet(16))
    vitlib.save_pretrained(loaded, tmp_path / "hf", format="huggingface")
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf["id2label"] == {str(index): name for index, name in enumerate(LABELS)}
    assert hf["label2id"] == {name: index for index, name in enumerate(LABELS)}
    assert model_metadata(vitlib.load_pretrained(tmp_path / "hf")).labels == tuple(LABELS)


def test_load_pretrained_returns_the_model_in_eval_mode(tmp_path: Path) -> None:
    vitlib.save_pretrained(tiny_vit().train(), tmp_path / "ck")
    assert not vitlib.load_pretrained(tmp_path / "ck").training


def test_a_format_1_checkpoint_without_metadata_still_loads(tmp_path: Path) -> None:
    model = tiny_vit()
    vitlib.save_pretrained(model, tmp_path / "old")
    _edit_config(tmp_path / "old", format_version=1)
    loaded = vitlib.load_pretrained(tmp_path / "old")
    assert model_metadata(loaded) == ModelMetadata()
    assert torch.equal(loaded(torch.ones(1, 3, 16, 16)), model(torch.ones(1, 3, 16, 16)))


def test_a_newer_format_version_is_refused_with_the_upgrade(tmp_path: Path) -> None:
    vitlib.save_pretrained(tiny_vit(), tmp_path / "new")
    _edit_config(tmp_path / "new", format_version=3)
    with pytest.raises(CheckpointError, match=r"format_version 3, written by a newer vitlib.*"):
        vitlib.load_pretrained(tmp_path / "new")
    with pytest.raises(CheckpointError, match="pip install -U vitlib"):
        vitlib.load_pretrained(tmp_path / "new")


@pytest.mark.parametrize("labels", [["a", "b"], ["a", "b", "c", "d", "e", "f"]])
def test_a_checkpoint_whose_labels_count_differs_from_its_head_is_refused(
    tmp_path: Path, labels: list[str]
) -> None:
    vitlib.save_pretrained(tiny_vit(), tmp_path / "ck")
    _edit_config(tmp_path / "ck", labels=labels)
    with pytest.raises(CheckpointError, match=f"name {len(labels)} classes but the model's head"):
        vitlib.load_pretrained(tmp_path / "ck")


def test_a_hugging_face_id2label_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    vitlib.save_pretrained(tiny_vit(), tmp_path / "hf", format="huggingface")
    _edit_config(tmp_path / "hf", id2label={"0": "a", "1": "b"})
    with pytest.raises(CheckpointError, match="name 2 classes but the model's head has 5"):
        vitlib.load_pretrained(tmp_path / "hf")


def test_hugging_face_default_names_are_no_labels(tmp_path: Path) -> None:
    vitlib.save_pretrained(tiny_vit(), tmp_path / "hf", format="huggingface")
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf["id2label"]["4"] == "LABEL_4"
    assert model_metadata(vitlib.load_pretrained(tmp_path / "hf")).labels is None


def test_hugging_face_preprocessor_config_is_read(tmp_path: Path) -> None:
    vitlib.save_pretrained(tiny_vit(), tmp_path / "hf", format="huggingface")
    processor = {"do_resize": True, "size": {"height": 16, "width": 16}, "resample": 3}
    processor |= {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    (tmp_path / "hf" / "preprocessor_config.json").write_text(json.dumps(processor))
    spec = model_metadata(vitlib.load_pretrained(tmp_path / "hf")).preprocessing
    assert spec == Preprocessing(
        (16, 16), mean=(0.5,) * 3, std=(0.5,) * 3, resize="squash", crop_ratio=1.0,
        interpolation="bicubic",
    )  # fmt: skip


def _timm_folder(tmp_path: Path) -> Path:
    """A timm hub folder of the tiny model: weights and a config.json with label names and a
    pretrained_cfg."""
    from safetensors.torch import save_file

    folder = tmp_path / "timm"
    folder.mkdir()
    weights = vitlib.checkpoints.export_state_dict(tiny_vit(), "timm")
    save_file(weights, str(folder / "model.safetensors"))
    config = {
        "architecture": "vit_tiny_patch4_16",
        "num_classes": 5,
        "label_names": LABELS,
        "pretrained_cfg": {
            "input_size": [3, 16, 16],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "crop_pct": 0.9,
            "interpolation": "bicubic",
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_timm_label_names_and_pretrained_cfg_are_read(tmp_path: Path) -> None:
    folder = _timm_folder(tmp_path)
    loaded = vitlib.load_pretrained(folder)
    assert model_metadata(loaded) == ModelMetadata(
        tuple(LABELS),
        Preprocessing((16, 16), mean=(0.5,) * 3, std=(0.25,) * 3, crop_ratio=0.9,
                      interpolation="bicubic"),
    )  # fmt: skip


def test_a_new_head_drops_the_labels_and_a_new_size_keeps_the_preprocessing(
    tmp_path: Path,
) -> None:
    vitlib.save_pretrained(_labelled(), tmp_path / "ck")
    with pytest.warns(vitlib.AdaptedCheckpointWarning):
        new_head = vitlib.load_pretrained(tmp_path / "ck", num_classes=2)
    assert model_metadata(new_head).labels is None
    resized = model_metadata(vitlib.load_pretrained(tmp_path / "ck", img_size=32))
    assert resized.labels == tuple(LABELS)
    assert resized.preprocessing == Preprocessing.imagenet(32)
    grey = vitlib.load_pretrained(tmp_path / "ck", in_channels=1)
    assert model_metadata(grey).preprocessing is None


def test_load_pretrained_on_a_run_folder_loads_best(tmp_path: Path) -> None:
    best, last = _labelled(seed=1), _labelled(seed=2)
    vitlib.save_pretrained(best, tmp_path / "run" / "best")
    vitlib.save_pretrained(last, tmp_path / "run" / "last")
    loaded = vitlib.load_pretrained(tmp_path / "run")
    images = torch.ones(1, 3, 16, 16)
    assert torch.equal(loaded(images), best(images))


def test_load_pretrained_on_a_run_folder_without_best_names_last(tmp_path: Path) -> None:
    vitlib.save_pretrained(tiny_vit(), tmp_path / "run" / "last")
    with pytest.raises(CheckpointError, match=r"without a best/ checkpoint.*load .*last"):
        vitlib.load_pretrained(tmp_path / "run")


def test_attach_metadata_refuses_labels_that_do_not_fit_the_head() -> None:
    with pytest.raises(ValueError, match="name 2 classes but the model's head has 5 outputs"):
        attach_metadata(tiny_vit(), labels=["a", "b"])
    with pytest.raises(ValueError, match="repeat"):
        attach_metadata(tiny_vit(), labels=["a", "a", "b", "c", "d"])
    with pytest.raises(TypeError, match="list of class names"):
        attach_metadata(tiny_vit(), labels="abcde")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": 2}, r"channels must be 1 \(grey\) or 3 \(RGB\), got 2"),
        ({"mean": (0.5, 0.5)}, r"mean must be 3 number\(s\), one per channel, got 2"),
        ({"std": (1.0, 0.0, 1.0)}, r"each of std must be a number in \[0.001, 1000\], got 0.0"),
        ({"std": (1e-300,) * 3}, r"each of std .* got 1e-300"),
        ({"mean": (1e300, 0.4, 0.3)}, r"each of mean .* got 1e\+300"),
        ({"crop_ratio": 1.5}, r"crop_ratio must be a number in \[0.1, 1\], got 1.5"),
        ({"crop_ratio": 1e-9}, r"crop_ratio must be a number in \[0.1, 1\], got 1e-09"),
        ({"resize": "stretch"}, "resize must be one of 'center_crop', 'squash', got 'stretch'"),
        ({"interpolation": "lanczos"}, "interpolation must be one of .* got 'lanczos'"),
        ({"image_size": 0}, "image_size must be an int >= 1, got 0"),
    ],
)
def test_preprocessing_refuses_invalid_fields(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Preprocessing(**{"image_size": (16, 16), **changes})  # type: ignore[arg-type]


def test_preprocessing_round_trips_through_json() -> None:
    spec = Preprocessing((24, 16), channels=1, mean=(0.3,), std=(0.4,), resize="squash")
    assert Preprocessing.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# --- What is wrong in a checkpoint's metadata is named with its file, once ---


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"labels": ["a", "a", "b", "c", "d"]}, r"labels repeat \['a'\]"),
        ({"labels": "abcde"}, "labels must be a list of class names"),
        ({"labels": ["a", "", "b", "c", "d"]}, "labels must be non-empty strings"),
        ({"preprocessing": {"image_size": [16, 16], "std": [1e-300] * 3}}, "each of std"),
        ({"preprocessing": {"std": [0.5] * 3}}, "preprocessing lacks 'image_size'"),
        ({"preprocessing": [16, 16]}, "preprocessing must be a JSON object"),
        ({"preprocessing": {"image_size": [64, 64]}}, "makes 64x64 images but the model takes"),
        ({"preprocessing": {"image_size": [16, 16], "channels": 1, "mean": [0.5], "std": [0.5]}},
         "makes 1-channel images but the model takes 3 channels"),
        ({"preprocessing": {"image_size": [16, 16], "crop_ratio": 1e-9}}, "crop_ratio"),
    ],
    ids=["repeat", "string", "empty", "std", "no-size", "list", "size", "channels", "crop"],
)  # fmt: skip
def test_a_vitlib_config_with_unusable_metadata_is_refused_naming_the_file_and_the_fix(
    tmp_path: Path, entries: dict[str, object], message: str
) -> None:
    vitlib.save_pretrained(tiny_vit(), tmp_path / "ck")
    _edit_config(tmp_path / "ck", **entries)
    with pytest.raises(CheckpointError) as caught:
        vitlib.load_pretrained(tmp_path / "ck")
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'ck' / 'config.json'}: ")
    assert re.search(message, text), text
    assert "vitlib.attach_metadata(model" in text


@pytest.mark.parametrize(
    ("id2label", "message"),
    [
        ({"0": "a", "00": "b", "1": "c", "2": "d", "3": "e"},
         r"the same class index: \[\['0', '00'\]\]"),
        ({"0": "a", "1": "b", "2": "c", "3": "d", "7": "e"}, r"indices \[0, 1, 2, 3, 7\]"),
        (["a", "b", "c", "d", "e"], "'id2label' must map class indices to names"),
    ],
    ids=["collide", "gap", "list"],
)  # fmt: skip
def test_a_hugging_face_id2label_that_is_not_one_name_per_index_is_refused(
    tmp_path: Path, id2label: object, message: str
) -> None:
    vitlib.save_pretrained(tiny_vit(), tmp_path / "hf", format="huggingface")
    _edit_config(tmp_path / "hf", id2label=id2label)
    with pytest.raises(CheckpointError, match=message) as caught:
        vitlib.load_pretrained(tmp_path / "hf")
    assert str(caught.value).startswith(f"{tmp_path / 'hf' / 'config.json'}: ")


@pytest.mark.parametrize(
    ("processor", "field"),
    [
        ({"do_resize": False}, "'do_resize' is false"),
        ({"size": {"height": 16}}, "'size' must have 'height' and 'width'"),
        ({"resample": 1}, "'resample' is 1"),
        ({"image_std": [0.0] * 3}, "each of std"),
        ({"image_mean": [0.5] * 2}, "mean must be 3 number"),
        ({"size": {"height": 10**6, "width": 10**6}}, "makes 1000000x1000000 images"),
    ],
    ids=["no-resize", "no-width", "filter", "std", "mean", "size"],
)
def test_unusable_hugging_face_preprocessing_is_ignored_with_a_warning_naming_file_and_field(
    tmp_path: Path, processor: dict[str, object], field: str
) -> None:
    vitlib.save_pretrained(tiny_vit(), tmp_path / "hf", format="huggingface")
    valid = {"size": {"height": 16, "width": 16}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    path = tmp_path / "hf" / "preprocessor_config.json"
    path.write_text(json.dumps(valid | processor))
    with pytest.warns(UserWarning, match=re.escape(f"{path}: ")) as caught:
        loaded = vitlib.load_pretrained(tmp_path / "hf")
    assert any(re.search(field, str(warning.message)) for warning in caught), caught[0].message
    assert model_metadata(loaded).preprocessing is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"interpolation": "lanczos"}, "'pretrained_cfg.interpolation' is 'lanczos'"),
        ({"crop_mode": "squash"}, "'pretrained_cfg.crop_mode' is 'squash'"),
        ({"crop_pct": 2.0}, "crop_ratio must be a number"),
        ({"mean": [0.5, 0.5]}, "mean must be 3 number"),
    ],
)
def test_unusable_timm_preprocessing_is_ignored_with_a_warning_naming_the_field(
    tmp_path: Path, changes: dict[str, object], field: str
) -> None:
    folder = _timm_folder(tmp_path)
    data = json.loads((folder / "config.json").read_text())
    data["pretrained_cfg"] |= changes
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=field):
        loaded = vitlib.load_pretrained(folder)
    assert model_metadata(loaded).preprocessing is None


def test_attach_metadata_refuses_a_preprocessing_the_model_cannot_take() -> None:
    with pytest.raises(ConfigError, match=r"makes 64x64 images but the model takes 16x16 images"):
        attach_metadata(tiny_vit(), preprocessing=Preprocessing.imagenet(64))
    grey = Preprocessing((16, 16), channels=1, mean=(0.5,), std=(0.5,))
    with pytest.raises(ConfigError, match="makes 1-channel images but the model takes 3"):
        attach_metadata(tiny_vit(), preprocessing=grey)
    dynamic = tiny_vit(dynamic_img_size=True)
    attach_metadata(dynamic, preprocessing=Preprocessing.imagenet((32, 16)))  # patches fit
    with pytest.raises(ConfigError, match="a multiple of the patch size 4x4"):
        attach_metadata(dynamic, preprocessing=Preprocessing.imagenet((30, 16)))


# --- The chapter's head swap: the config follows the head ---


def test_a_swapped_head_saves_loads_and_predicts_with_its_own_classes(tmp_path: Path) -> None:
    model = _labelled()
    model.head = torch.nn.Linear(model.config.num_features, 3)  # the chapter's head swap
    assert model.config.num_classes == 3
    with pytest.raises(ConfigError, match="records 5 class names but its head has 3 outputs"):
        vitlib.save_pretrained(model, tmp_path / "stale")
    with pytest.raises(ConfigError, match=r"vitlib.attach_metadata\(model, labels="):
        vitlib.predict(model, torch.rand(3, 16, 16))
    assert not (tmp_path / "stale").exists()
    attach_metadata(model, labels=["cat", "dog", "bird"])
    vitlib.save_pretrained(model, tmp_path / "ck")
    loaded = vitlib.load_pretrained(tmp_path / "ck")
    assert loaded.config == model.config
    assert model_metadata(loaded).labels == ("cat", "dog", "bird")
    images = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(loaded(images), model.eval()(images))
    model.head = torch.nn.Identity()
    assert model.config.num_classes == 0


def test_a_head_that_does_not_read_the_features_or_is_not_linear_is_refused(
    tmp_path: Path,
) -> None:
    model = tiny_vit()
    with pytest.raises(ConfigError, match=r"reads 7 features, but .* are 12 wide"):
        model.head = torch.nn.Linear(7, 3)
    model.head = torch.nn.Sequential(torch.nn.Linear(12, 3))
    refused = r"model.head is a Sequential; .*nn\.Sequential\(vit, your_head\)"
    with pytest.raises(CheckpointError, match=refused):
        vitlib.save_pretrained(model, tmp_path / "ck")
    assert not (tmp_path / "ck").exists()
