"""PNG pictures of the ``vitlib.analysis`` results, in the style of the paper.

One function per figure panel of Dosovitskiy et al. (2020): the embedding filters (Fig. 7 left),
the position-embedding similarity (Fig. 7 centre), the mean attention distance by depth (Fig. 7
right) and the attention rollout over the input image (Fig. 6). Each takes the tensor the
analysis returned and a path, and keeps the contract of every picture (`vitlib.analysis.plots`
states it once): a PNG written atomically, an existing file replaced only with
``overwrite=True``, matplotlib imported on use, no display needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from torch import Tensor
from torch.nn import functional as F

from vitlib._checks import check_int
from vitlib.analysis.plots import check_png_path, displayable, draw_image, new_figure, save_figure
from vitlib.errors import ConfigError

__all__ = [
    "plot_attention_distance",
    "plot_attention_rollout",
    "plot_embedding_filters",
    "plot_position_similarity",
    "similarity_mosaic",
]

_CELL_INCHES: Final = 1.2
_SIMILARITY_COLOURS: Final = "viridis"
_ROLLOUT_COLOURS: Final = "inferno"


def plot_embedding_filters(
    filters: Tensor,
    path: str | os.PathLike[str],
    *,
    columns: int = 7,
    overwrite: bool = False,
) -> Path:
    """Save the principal components of the patch filters as a grid of images (Fig. 7 left).

    Each filter is min-max scaled on its own, so its pattern shows whatever its range.

    Args:
        filters: ``(k, C, P_h, P_w)`` with ``C`` 1 (drawn grey) or 3 (RGB), as
            [`embedding_filters`][vitlib.analysis.embedding_filters] returns.
        columns: Filters per row; the paper shows 28 in 4 rows of 7.
    """
    if not isinstance(filters, Tensor) or filters.ndim != 4 or filters.shape[1] not in (1, 3):
        raise ConfigError(
            f"filters must be a tensor (k, C, P_h, P_w) with C = 1 or 3, got {_describe(filters)}; "
            f"pass vitlib.analysis.embedding_filters(model) (of a 1- or 3-channel model)"
        )
    if len(filters) == 0:
        raise ConfigError("filters is empty (k = 0); pass at least one filter")
    check_int("columns", columns, minimum=1, fix="the paper uses 7")
    out = check_png_path(path, overwrite)
    pixels = filters.detach().cpu().float()
    low = pixels.amin(dim=(1, 2, 3), keepdim=True)
    high = pixels.amax(dim=(1, 2, 3), keepdim=True)
    scaled = (pixels - low) / (high - low).clamp_min(1e-12)
    count = len(scaled)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = new_figure(width=_CELL_INCHES * columns, height=_CELL_INCHES * rows + 0.5)
    for index in range(count):
        draw_image(figure.add_subplot(rows, columns, index + 1), scaled[index], "nearest")
    figure.suptitle(f"Embedding filters (first {count} principal components)")
    return save_figure(figure, out, overwrite=overwrite)


def plot_position_similarity(
    similarity: Tensor, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Save the position-embedding similarity as a grid of tiles (Fig. 7 centre).

    The tile at row ``r``, column ``c`` shows the cosine similarity of patch ``(r, c)``'s
    position embedding with every patch's, on a fixed scale from -1 to 1.

    Args:
        similarity: ``(rows, cols, rows, cols)``, as
            [`position_embedding_similarity`][vitlib.analysis.position_embedding_similarity]
            returns.
    """
    if (
        not isinstance(similarity, Tensor)
        or similarity.ndim != 4
        or similarity.shape[:2] != similarity.shape[2:]
        or similarity.numel() == 0
    ):
        raise ConfigError(
            f"similarity must be a tensor (rows, cols, rows, cols), got {_describe(similarity)}; "
            f"pass vitlib.analysis.position_embedding_similarity(model)"
        )
    out = check_png_path(path, overwrite)
    rows, cols = similarity.shape[:2]
    mosaic = similarity_mosaic(similarity)
    side = min(8.0, 2.0 + 0.45 * max(rows, cols))
    figure = new_figure(width=side + 1.2, height=side)
    axes = figure.add_subplot(1, 1, 1)
    from matplotlib import colormaps

    colours = colormaps[_SIMILARITY_COLOURS].with_extremes(bad="white")
    image = axes.imshow(mosaic, cmap=colours, vmin=-1.0, vmax=1.0, interpolation="nearest")
    axes.set_xticks([col * (cols + 1) + (cols - 1) / 2 for col in range(cols)])
    axes.set_xticklabels([str(col + 1) for col in range(cols)])
    axes.set_yticks([row * (rows + 1) + (rows - 1) / 2 for row in range(rows)])
    axes.set_yticklabels([str(row + 1) for row in range(rows)])
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.set_xlabel("Input patch column")
    axes.set_ylabel("Input patch row")
    axes.set_title("Position embedding similarity")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="Cosine similarity")
    return save_figure(figure, out, overwrite=overwrite)


def similarity_mosaic(similarity: Tensor) -> npt.NDArray[np.float32]:
    """The ``(rows, cols, rows, cols)`` similarity as one image of ``rows x cols`` tiles.

    Tile ``(r, c)`` (``rows x cols`` pixels, ``similarity[r, c]``) starts at pixel
    ``(r * (rows + 1), c * (cols + 1))``; the one-pixel gaps between tiles are NaN.
    """
    rows, cols = similarity.shape[:2]
    tiles = similarity.detach().cpu().float().numpy()
    mosaic = np.full((rows * (rows + 1) - 1, cols * (cols + 1) - 1), np.nan, dtype=np.float32)
    for row in range(rows):
        for col in range(cols):
            top, left = row * (rows + 1), col * (cols + 1)
            mosaic[top : top + rows, left : left + cols] = tiles[row, col]
    return mosaic


def plot_attention_distance(
    distances: Tensor, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Save the mean attention distance of every head against depth (Fig. 7 right).

    Args:
        distances: ``(layers, heads)`` in pixels, as
            [`mean_attention_distance`][vitlib.analysis.mean_attention_distance] returns.
    """
    if not isinstance(distances, Tensor) or distances.ndim != 2 or distances.numel() == 0:
        raise ConfigError(
            f"distances must be a non-empty tensor (layers, heads), got {_describe(distances)}; "
            f"pass vitlib.analysis.mean_attention_distance(model, images)"
        )
    out = check_png_path(path, overwrite)
    values = distances.detach().cpu().float()
    layers, heads = values.shape
    figure = new_figure(width=6.0, height=4.5)
    axes = figure.add_subplot(1, 1, 1)
    depth = np.arange(1, layers + 1)
    for head in range(heads):
        axes.scatter(depth, values[:, head].numpy(), s=18, label=f"Head {head + 1}")
    axes.set_xlabel("Network depth (layer)")
    axes.set_ylabel("Mean attention distance (pixels)")
    axes.set_xticks(depth if layers <= 24 else depth[:: math.ceil(layers / 12)])
    axes.set_ylim(bottom=0.0, top=max(1.0, float(values.max()) * 1.1))
    axes.grid(alpha=0.3)
    if heads <= 16:
        axes.legend(fontsize=7, ncol=2 if heads > 8 else 1, loc="lower right")
    axes.set_title("Mean attention distance")
    return save_figure(figure, out, overwrite=overwrite)


def plot_attention_rollout(
    image: Tensor,
    attention: Tensor,
    path: str | os.PathLike[str],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save an input image beside its rollout attention, overlaid and as a mask (Fig. 6).

    Three panels: the input; the attention, scaled to its maximum and resized to the image
    (bilinear); and the input multiplied by that mask, as the paper shows.

    Args:
        image: ``(C, H, W)`` with ``C`` 1 or 3, as given to the model.
        attention: ``(rows, cols)``, one image's map from
            [`rollout_map`][vitlib.analysis.rollout_map].

    Without ``mean``/``std`` the image is drawn as
    [`plot_predictions`][vitlib.analysis.plots.plot_predictions] draws one: as it is when in
    [0, 1], else min-max scaled.
    """
    if not isinstance(image, Tensor) or image.ndim != 3:
        raise ConfigError(
            f"image must be one image (C, H, W), got {_describe(image)}; pass images[0]"
        )
    if not isinstance(attention, Tensor) or attention.ndim != 2 or attention.numel() == 0:
        raise ConfigError(
            f"attention must be one map (rows, cols), got {_describe(attention)}; pass "
            f"vitlib.analysis.rollout_map(model, images)[0]"
        )
    shown = displayable(image.unsqueeze(0), mean, std)[0]
    out = check_png_path(path, overwrite)
    height, width = shown.shape[-2:]
    heat = attention.detach().cpu().float()[None, None]
    heat = F.interpolate(heat, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    heat = heat.clamp_min(0.0) / heat.max().clamp_min(1e-12)
    masked = shown * heat
    figure = new_figure(width=9.0, height=3.4)
    panels = figure.subplots(1, 3)
    draw_image(panels[0], shown)
    panels[0].set_title("Input")
    colours = panels[1].imshow(heat.numpy(), cmap=_ROLLOUT_COLOURS, vmin=0.0, vmax=1.0)
    panels[1].set_title("Attention rollout")
    draw_image(panels[2], masked)
    panels[2].set_title("Input x attention")
    for axes in panels:
        axes.axis("off")
    figure.colorbar(colours, ax=list(panels), fraction=0.02, pad=0.02, label="share of maximum")
    return save_figure(figure, out, overwrite=overwrite, crop=True)


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"shape {tuple(value.shape)}"
    return type(value).__name__
