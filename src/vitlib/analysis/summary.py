"""A per-layer summary of a model, like torchinfo: output shapes, parameters, trainable or not.

The forward pass that records the shapes runs on PyTorch's ``meta`` device by default, so even
ViT-H/14 is summarised instantly and without allocating its weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vitlib._checks import check_int
from vitlib._runtime import eval_mode
from vitlib.config import ViTConfig
from vitlib.counting import count_flops
from vitlib.errors import ConfigError
from vitlib.vit import ViT

__all__ = ["LayerRow", "ModelSummary", "summary"]


@dataclass(frozen=True)
class LayerRow:
    """One module of the summary."""

    name: str
    kind: str
    depth: int
    output_shape: tuple[int, ...] | None
    parameters: int
    trainable: int


@dataclass(frozen=True)
class ModelSummary:
    """The rows, totals and input shape of a summarised model; ``str()`` renders the table, whose
    first row is named after the config's ``name`` (``"ViT-B/16"``) when it has one."""

    rows: tuple[LayerRow, ...]
    input_shape: tuple[int, ...]
    total_parameters: int
    trainable_parameters: int
    flops: int | None
    name: str | None = None

    def __str__(self) -> str:
        headers = ("Layer (type)", "Output shape", "Param #", "Trainable")
        lines = [
            (
                "  " * row.depth
                + f"{row.name.rsplit('.', 1)[-1] or self.name or 'model'} ({row.kind})",
                "" if row.output_shape is None else str(list(row.output_shape)),
                f"{row.parameters:,}",
                _trainable_text(row),
            )
            for row in self.rows
        ]
        widths = [
            max(len(text) for text in column) for column in zip(headers, *lines, strict=False)
        ]
        rule = "=" * (sum(widths) + 3 * (len(widths) - 1))

        def render(cells: Sequence[str]) -> str:
            first = cells[0].ljust(widths[0])
            rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
            return "   ".join([first, *rest])

        footer = [
            f"Input shape: {list(self.input_shape)}",
            f"Total params: {self.total_parameters:,}",
            f"Trainable params: {self.trainable_parameters:,}",
            f"Non-trainable params: {self.total_parameters - self.trainable_parameters:,}",
        ]
        if self.flops is not None:
            footer.append(f"Forward FLOPs per image: {self.flops / 1e9:.2f} G (multiply-add = 2)")
        return "\n".join([rule, render(headers), rule, *map(render, lines), rule, *footer, rule])


def _trainable_text(row: LayerRow) -> str:
    if row.parameters == 0:
        return "--"
    if row.trainable == row.parameters:
        return "True"
    return "False" if row.trainable == 0 else "Partial"


def summary(
    model: nn.Module | ViTConfig | str,
    input_shape: Sequence[int] | None = None,
    *,
    depth: int = 3,
) -> ModelSummary:
    """Summarise ``model`` layer by layer.

    Args:
        model: A module, a [`ViTConfig`][vitlib.ViTConfig], or a preset name such as ``"ViT-B/16"``.
        input_shape: ``(B, C, H, W)``; for a ViT, ``(1, in_channels, *img_size)`` by default.
        depth: Deepest module level shown (the model itself is level 0).

    A model given by name or config is built on the ``meta`` device (no memory, no compute); a
    module runs one no-grad forward pass on its own device and is left as it was.

    Raises:
        ValueError: ``input_shape`` is missing for a model that is not a ViT.
        ConfigError: ``depth < 0``.
    """
    check_int("depth", depth, minimum=0, fix="0 shows the model alone")
    if isinstance(model, (str, ViTConfig)):
        preset = model if isinstance(model, ViTConfig) else ViTConfig.from_preset(model)
        with torch.device("meta"):
            model = ViT.from_config(preset)
    config = model.config if isinstance(model, ViT) else None
    if input_shape is None:
        if config is None:
            raise ConfigError(
                f"input_shape is required for a {type(model).__name__}; pass e.g. (1, 3, 224, 224)."
            )
        input_shape = (1, config.in_channels, *config.image_hw)
    shapes = _record_output_shapes(model, tuple(input_shape))
    for name, module in reversed(list(model.named_modules())):
        children = list(module.children())
        if name not in shapes and isinstance(module, nn.Sequential) and children:
            last_child = f"{name}.{len(children) - 1}" if name else str(len(children) - 1)
            if last_child in shapes:  # a Sequential iterated, not called: its last child's output
                shapes[name] = shapes[last_child]
    rows = tuple(
        LayerRow(
            name=name,
            kind=type(module).__name__,
            depth=name.count(".") + 1 if name else 0,
            output_shape=shapes.get(name),
            parameters=sum(p.numel() for p in module.parameters()),
            trainable=sum(p.numel() for p in module.parameters() if p.requires_grad),
        )
        for name, module in model.named_modules()
        if (name.count(".") + 1 if name else 0) <= depth
    )
    return ModelSummary(
        rows=rows,
        input_shape=tuple(input_shape),
        total_parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        flops=None if config is None else count_flops(config),
        name=None if config is None else config.name,
    )


def _record_output_shapes(
    model: nn.Module, input_shape: tuple[int, ...]
) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():

        def hook(_: nn.Module, __: object, output: object, name: str = name) -> None:
            if isinstance(output, Tensor):
                shapes[name] = tuple(output.shape)
            elif isinstance(output, tuple) and output and isinstance(output[0], Tensor):
                shapes[name] = tuple(output[0].shape)

        handles.append(module.register_forward_hook(hook))
    device = next(model.parameters(), torch.empty(0)).device
    try:
        with torch.no_grad(), eval_mode(model):
            model(torch.zeros(input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return shapes
