"""vitlib against every ViT peer that imports: one harness, one process, one table.

Implementations (each skipped with a printed note when it does not import):

* ``vitlib``: ``vitlib.create_model(preset, mlp_dropout=0.0, embedding_dropout=0.0)``.
* ``transformers``: Hugging Face ``ViTForImageClassification``, ``attn_implementation="sdpa"``.
* ``timm``: ``timm.models.vision_transformer.VisionTransformer``.
* ``torchvision``: ``torchvision.models.vision_transformer.VisionTransformer``.
* ``vit-pytorch``: lucidrains' ``vit_pytorch.ViT``.

All are built with the preset's hyper-parameters (patch 16, 224x224, depth, width, heads and MLP
width of ViT-S/16 or ViT-B/16, 1000 classes, qkv bias, every dropout 0), random weights, and
each library's default layer-norm epsilon: vitlib, timm and torchvision 1e-6, transformers
1e-12, vit-pytorch 1e-5 (``nn.LayerNorm``'s default). vit-pytorch cannot have a qkv bias and
embeds patches with LayerNorm -> Linear -> LayerNorm instead of one convolution; that is its
architecture, timed as it is (the FLOPs differ by well under 1%).

Measured interleaved, all at ``--threads`` threads (default 2): each round warms every model up
with one call, then runs ``--repeats`` sweeps, each calling every implementation once, the order
rotated from sweep to sweep (A B C D, B C D A, ...), so a change in the machine's load lands on
all of them alike:

* inference images/s under ``torch.inference_mode()``, eval mode: ViT-S/16 and ViT-B/16, batch 8;
* training images/s, ViT-S/16, batch 16: forward, cross-entropy, backward and one
  ``torch.optim.AdamW(lr=1e-4, weight_decay=0.05)`` step over all parameters, torch's default
  (for-loop) implementation on CPU: the same optimizer code for every implementation;
* the fp32, bf16 and int8 GEMM rates (``torch.mm`` fp32 and bf16, ``torch._int_mm`` int8, on
  ``--gemm-size`` cubes, default 1024), measured in the same rounds, so each throughput is also
  given as a share of the fp32 rate (forward FLOPs per image of the whole network from
  ``vitlib.count_flops``, training counted as 3x forward; vitlib's own forward runs 6% fewer,
  see its class-token shortcut, so its share is an effective rate), against a fp32 GEMM timed
  inside the same sweeps;
* peak training memory, once per implementation, each in a fresh subprocess: the growth of the
  resident set (``VmHWM`` after ``--memory-steps`` training steps, its high-water mark reset
  through ``/proc/self/clear_refs`` just before them, minus ``VmRSS`` before them), i.e. the
  gradients, AdamW's state, activations and allocator slack on top of the built model and the
  batch. Why this method: PyTorch's CPU tensors come from its C++ allocator, which
  ``tracemalloc`` never sees; ``ru_maxrss`` cannot be reset and also holds the import's peak;
  the profiler's memory events count requested bytes but not the pages the process really
  holds, and slow the run down. A fresh process per model means no earlier model's freed
  memory is reused or counted.

Before timing, every model's weights are perturbed (so zero-initialised heads and unit norms
cannot hide a mis-mapped tensor) and the peers' state dicts are loaded into vitlib with
``vitlib.load_pretrained`` (transformers, timm, torchvision) to compare logits to 1e-4; for
vit-pytorch, whose patch embedding differs, its encoder, final norm and head are copied into a
vitlib model without qkv bias and compared from the same tokens. A harness that timed different
functions would prove nothing. Throughput is the median over all ``--rounds`` x ``--repeats``
timed calls, and the best (fastest) call; vitlib's ratio to the best peer is given both as the
ratio of the medians and as the median of the ratios within a sweep (paired). glibc's malloc
thresholds are fixed at the start (mmap threshold 32 MiB, trim threshold 1 GiB): otherwise
whichever model runs first loses 15-20% to page faults.

Setup. The main venv has only vitlib and transformers; the other peers need torchvision, whose
only wheel for torch 2.13 is a CUDA build (``_torchvision_shim.py`` imports it anyway). Install
them in a separate venv, ``benchmarks/setup_peers_venv.sh`` does it::

    python3 -m venv /work/peers-venv
    /work/peers-venv/bin/pip install torch==2.13.0 torchvision==0.28.0 timm==1.0.31 \\
        vit-pytorch==1.26.11 transformers==5.24.0 einops safetensors numpy
    /work/peers-venv/bin/pip install -e . --no-deps

Always pin torch==2.13.0 there (else pip fetches a multi-GB CUDA torch). Then::

    /work/peers-venv/bin/python benchmarks/peers.py --quick           # smoke test, seconds
    /work/peers-venv/bin/python benchmarks/peers.py \\
        --json benchmarks/results/peers.json --markdown benchmarks/results/peers.md
    python benchmarks/peers.py --models vitlib,transformers --rounds 5 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import dataclasses
import datetime
import functools
import gc
import importlib
import importlib.metadata
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import vitlib

HERE = Path(__file__).resolve().parent
IMPLEMENTATIONS = ("vitlib", "transformers", "timm", "torchvision", "vit-pytorch")
TOLERANCE = 1e-4
GEMM_IN_SWEEP = "fp32 GEMM"  # timed in every sweep beside the models, for their shares
_WORKER_FLAG = "--_memory-worker"
_WORKER_MARK = "PEERS-MEMORY-RESULT "

# ---------------------------------------------------------------------------------------------
# Process set-up


def fix_malloc() -> str:
    """Fix glibc's mmap and trim thresholds (``mallopt``), so no model pays the page faults."""
    m_trim_threshold, m_mmap_threshold = -1, -3
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(m_mmap_threshold, 32 * 2**20) and libc.mallopt(m_trim_threshold, 2**30)
    except (OSError, AttributeError):
        return "not glibc: malloc thresholds left as they are"
    return "mmap threshold 32 MiB, trim threshold 1 GiB" if ok else "mallopt refused"


# ---------------------------------------------------------------------------------------------
# Sizes and implementations


@dataclasses.dataclass(frozen=True)
class Size:
    label: str
    config: vitlib.ViTConfig


def preset(name: str) -> Size:
    return Size(name, vitlib.ViTConfig.from_preset(name, mlp_dropout=0.0, embedding_dropout=0.0))


def tiny() -> Size:
    config = vitlib.ViTConfig(
        img_size=32,
        patch_size=8,
        num_transformer_layers=2,
        embedding_dim=64,
        mlp_size=256,
        num_heads=2,
        mlp_dropout=0.0,
        embedding_dropout=0.0,
        num_classes=10,
    )
    return Size("tiny (32px, P8, L2, D64)", config)


class Logits(nn.Module):
    """Calls a Hugging Face model with ``pixel_values`` and returns ``.logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        logits: Tensor = self.model(pixel_values=images).logits
        return logits


@dataclasses.dataclass(frozen=True)
class Implementation:
    name: str
    version: str
    layer_norm_eps: float
    build: Callable[[vitlib.ViTConfig], nn.Module]
    check: Callable[[nn.Module, vitlib.ViTConfig], dict[str, Any]]
    note: str = ""


def _square(pair: tuple[int, int], what: str) -> int:
    if pair[0] != pair[1]:
        raise ValueError(f"{what} must be square for this peer, got {pair}")
    return pair[0]


def _load_vitlib() -> Implementation:
    def build(cfg: vitlib.ViTConfig) -> nn.Module:
        if cfg.name is not None:
            return vitlib.create_model(cfg.name, mlp_dropout=0.0, embedding_dropout=0.0)
        return vitlib.ViT.from_config(cfg)

    def check(model: nn.Module, cfg: vitlib.ViTConfig) -> dict[str, Any]:
        return {"status": "reference", "detail": "the function the peers are compared to"}

    return Implementation("vitlib", vitlib.__version__, 1e-6, build, check)


def _check_by_loading(eps: float) -> Callable[[nn.Module, vitlib.ViTConfig], dict[str, Any]]:
    """Load the peer's state dict into vitlib and compare the logits on the same images."""

    def check(model: nn.Module, cfg: vitlib.ViTConfig) -> dict[str, Any]:
        inner = model.model if isinstance(model, Logits) else model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = vitlib.load_pretrained(
                inner.state_dict(), num_heads=cfg.num_heads, layer_norm_eps=eps
            )
        images = torch.randn(2, cfg.in_channels, *cfg.image_hw, generator=_generator(1))
        return _compare(ours.eval(), model, images, "logits via vitlib.load_pretrained")

    return check


def _load_transformers() -> Implementation:
    import transformers

    def build(cfg: vitlib.ViTConfig) -> nn.Module:
        hf_config = transformers.ViTConfig(
            hidden_size=cfg.embedding_dim,
            num_hidden_layers=cfg.num_transformer_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.mlp_size,
            hidden_act="gelu",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            image_size=_square(cfg.image_hw, "img_size"),
            patch_size=_square(cfg.patch_hw, "patch_size"),
            num_channels=cfg.in_channels,
            qkv_bias=True,
            num_labels=cfg.num_classes,
            attn_implementation="sdpa",
        )
        model = transformers.ViTForImageClassification(hf_config)
        if model.config._attn_implementation != "sdpa":
            raise RuntimeError(f"got attention {model.config._attn_implementation!r}, not sdpa")
        return Logits(model)

    eps = transformers.ViTConfig().layer_norm_eps
    return Implementation(
        "transformers", transformers.__version__, eps, build, _check_by_loading(eps), "sdpa"
    )


def _load_timm() -> Implementation:
    import timm
    from timm.layers import use_fused_attn
    from timm.models.vision_transformer import VisionTransformer

    def build(cfg: vitlib.ViTConfig) -> nn.Module:
        return VisionTransformer(
            img_size=cfg.image_hw,
            patch_size=cfg.patch_hw,
            in_chans=cfg.in_channels,
            num_classes=cfg.num_classes,
            embed_dim=cfg.embedding_dim,
            depth=cfg.num_transformer_layers,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_size / cfg.embedding_dim,
            qkv_bias=True,
            drop_rate=0.0,
            pos_drop_rate=0.0,
            proj_drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.0,
        )

    note = "fused (sdpa) attention" if use_fused_attn() else "unfused attention"
    return Implementation("timm", timm.__version__, 1e-6, build, _check_by_loading(1e-6), note)


def _load_torchvision() -> Implementation:
    import torchvision  # through the shim, in load_implementations
    from torchvision.models.vision_transformer import VisionTransformer

    def build(cfg: vitlib.ViTConfig) -> nn.Module:
        return VisionTransformer(
            image_size=_square(cfg.image_hw, "img_size"),
            patch_size=_square(cfg.patch_hw, "patch_size"),
            num_layers=cfg.num_transformer_layers,
            num_heads=cfg.num_heads,
            hidden_dim=cfg.embedding_dim,
            mlp_dim=cfg.mlp_size,
            dropout=0.0,
            attention_dropout=0.0,
            num_classes=cfg.num_classes,
        )

    return Implementation(
        "torchvision",
        torchvision.__version__,
        1e-6,
        build,
        _check_by_loading(1e-6),
        "nn.MultiheadAttention",
    )


def _load_vit_pytorch() -> Implementation:
    from vit_pytorch import ViT as LucidViT

    def build(cfg: vitlib.ViTConfig) -> nn.Module:
        return LucidViT(
            image_size=cfg.image_hw,
            patch_size=cfg.patch_hw,
            num_classes=cfg.num_classes,
            dim=cfg.embedding_dim,
            depth=cfg.num_transformer_layers,
            heads=cfg.num_heads,
            mlp_dim=cfg.mlp_size,
            pool="cls",
            channels=cfg.in_channels,
            dim_head=cfg.embedding_dim // cfg.num_heads,
            dropout=0.0,
            emb_dropout=0.0,
        )

    def check(model: nn.Module, cfg: vitlib.ViTConfig) -> dict[str, Any]:
        ours = vitlib.ViT.from_config(dataclasses.replace(cfg, qkv_bias=False, layer_norm_eps=1e-5))
        ours.load_state_dict(_from_vit_pytorch(model.state_dict(), ours.state_dict()))
        tokens = torch.randn(
            2, cfg.num_prefix_tokens + cfg.num_patches, cfg.embedding_dim, generator=_generator(2)
        )
        lucid: Any = model

        def vitlib_from_tokens(x: Tensor) -> Tensor:
            out: Tensor = ours.forward_head(ours.norm(ours.transformer_encoder(x)))
            return out

        def lucid_from_tokens(x: Tensor) -> Tensor:
            out: Tensor = lucid.mlp_head(lucid.transformer(x)[:, 0])
            return out

        result = _compare(
            vitlib_from_tokens,
            lucid_from_tokens,
            tokens,
            "tokens -> logits (encoder, norm, head; vitlib without qkv bias, eps 1e-5); "
            "its patch embedding LayerNorm -> Linear -> LayerNorm has no vitlib counterpart",
        )
        return result

    version = importlib.metadata.version("vit-pytorch")
    note = "no qkv bias, LN-Linear-LN patch embedding, unfused attention"
    return Implementation("vit-pytorch", version, 1e-5, build, check, note)


def _from_vit_pytorch(theirs: dict[str, Tensor], ours: dict[str, Tensor]) -> dict[str, Tensor]:
    """vit-pytorch's encoder, final norm and head under vitlib's names; the rest stays ours."""
    renames = {
        ".0.norm.": ".msa_block.layer_norm.",
        ".0.to_qkv.": ".msa_block.qkv.",
        ".0.to_out.0.": ".msa_block.out_proj.",
        ".1.net.0.": ".mlp_block.layer_norm.",
        ".1.net.1.": ".mlp_block.fc1.",
        ".1.net.4.": ".mlp_block.fc2.",
    }
    state = dict(ours)
    for key, tensor in theirs.items():
        if key.startswith("transformer.layers."):
            new = "transformer_encoder." + key.removeprefix("transformer.layers.")
            for old, replacement in renames.items():
                new = new.replace(old, replacement)
        elif key.startswith(("transformer.norm.", "mlp_head.")):
            new = key.removeprefix("transformer.").replace("mlp_head.", "head.")
        else:
            continue
        if new not in state:
            raise KeyError(f"vit-pytorch's {key} maps to {new}, which vitlib does not have")
        state[new] = tensor
    return state


LOADERS: dict[str, Callable[[], Implementation]] = {
    "vitlib": _load_vitlib,
    "transformers": _load_transformers,
    "timm": _load_timm,
    "torchvision": _load_torchvision,
    "vit-pytorch": _load_vit_pytorch,
}


def load_implementations(names: list[str]) -> tuple[dict[str, Implementation], dict[str, str]]:
    """Import each implementation; those that fail are returned as ``name -> reason``."""
    found: dict[str, Implementation] = {}
    skipped: dict[str, str] = {}
    # torchvision first, through the shim, whether it is measured or not: timm, vit-pytorch and
    # transformers' ViT import it when it is installed, and would fail on its registrations.
    sys.path.insert(0, str(HERE))
    from _torchvision_shim import import_torchvision

    try:
        import_torchvision()
    except ImportError:
        pass  # not installed: the peers that need it will say so
    except Exception as error:
        print(f"note: torchvision does not import ({error})".splitlines()[0], flush=True)
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found[name] = LOADERS[name]()
        except Exception as error:
            skipped[name] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
    return found, skipped


# ---------------------------------------------------------------------------------------------
# Equality


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def perturb(model: nn.Module, seed: int) -> None:
    """Add N(0, 0.02^2) noise to every parameter: no zero head, no unit norm hides a mismatch."""
    generator = _generator(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(noise, alpha=0.02)


def _compare(
    ours: Callable[[Tensor], Tensor],
    theirs: Callable[[Tensor], Tensor],
    inputs: Tensor,
    what: str,
) -> dict[str, Any]:
    with torch.inference_mode():
        expected, got = ours(inputs), theirs(inputs)
    diff = (expected - got).abs().max().item()
    scale = expected.abs().max().item()
    ok = diff <= TOLERANCE and scale > 0.0
    return {
        "status": "same" if ok else "DIFFERENT",
        "max_abs_diff": diff,
        "max_abs_logit": scale,
        "detail": what,
    }


# ---------------------------------------------------------------------------------------------
# Measurement


@dataclasses.dataclass(frozen=True)
class Task:
    key: str
    kind: str  # "infer" or "train"
    size: Size
    batch: int

    @property
    def flops_per_image(self) -> int:
        forward = vitlib.count_flops(self.size.config)
        return forward if self.kind == "infer" else 3 * forward

    @property
    def title(self) -> str:
        verb = "inference" if self.kind == "infer" else "training"
        return f"{self.size.label} {verb}, batch {self.batch}"


def clock(call: Callable[[], object]) -> tuple[float, object]:
    """Seconds one call takes, and what it returned."""
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def rotated(items: list[str], shift: int) -> list[str]:
    """``items`` rotated left by ``shift``: A B C D, B C D A, C D A B, ..."""
    k = shift % len(items)
    return items[k:] + items[:k]


def infer(model: nn.Module, images: Tensor) -> Tensor:
    with torch.inference_mode():
        out: Tensor = model(images)
    return out


def make_optimizer(model: nn.Module, *, fused: bool = False) -> torch.optim.Optimizer:
    """The one optimizer for every implementation: AdamW on all parameters alike.

    ``fused=True`` (only for the fast-path entries) runs the same update through PyTorch's fused
    kernel, as ``vitlib.training.build_optimizer`` does.
    """
    return torch.optim.AdamW(
        model.parameters(), lr=1e-4, weight_decay=0.05, fused=True if fused else None
    )


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor
) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


def inputs(cfg: vitlib.ViTConfig, batch: int, seed: int) -> tuple[Tensor, Tensor]:
    generator = _generator(seed)
    images = torch.randn(batch, cfg.in_channels, *cfg.image_hw, generator=generator)
    labels = torch.randint(0, cfg.num_classes, (batch,), generator=generator)
    return images, labels


class Gemm:
    """``torch.mm`` fp32 / bf16 and ``torch._int_mm`` int8 on n x n x n; one call ~0.2 s."""

    def __init__(self, n: int) -> None:
        generator = _generator(3)
        self.n = n
        a = torch.randn(n, n, generator=generator)
        b = torch.randn(n, n, generator=generator)
        int8_a = torch.randint(-128, 128, (n, n), generator=generator, dtype=torch.int8)
        int8_b = torch.randint(-128, 128, (n, n), generator=generator, dtype=torch.int8)
        bf16_a, bf16_b = a.bfloat16(), b.bfloat16()
        self.calls: dict[str, Callable[[], Tensor]] = {
            "fp32": lambda: torch.mm(a, b),
            "bf16": lambda: torch.mm(bf16_a, bf16_b),
            "int8": lambda: torch._int_mm(int8_a, int8_b),
        }
        self.inner: dict[str, int] = {}
        for dtype, call in self.calls.items():
            for _ in range(3):  # first calls pay for packing and JIT-compiled kernels
                call()
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < 0.05:
                call()
                count += 1
            once = (time.perf_counter() - start) / count
            self.inner[dtype] = max(1, math.ceil(0.2 / once))

    def runner(self, dtype: str) -> Callable[[], None]:
        call, inner = self.calls[dtype], self.inner[dtype]

        def run() -> None:
            for _ in range(inner):
                call()

        return run

    def ops_per_call(self, dtype: str) -> float:
        return 2.0 * self.n**3 * self.inner[dtype]


def build_models(
    implementations: dict[str, Implementation], sizes: list[Size]
) -> dict[tuple[str, str], nn.Module]:
    """Every implementation at every size, seeded, eval mode, weights perturbed."""
    models: dict[tuple[str, str], nn.Module] = {}
    for size in sizes:
        for name, impl in implementations.items():
            torch.manual_seed(0)
            model = impl.build(size.config).eval()
            perturb(model, seed=10)
            models[(name, size.label)] = model
    return models


def run_rounds(
    models: dict[tuple[str, str], nn.Module],
    names: list[str],
    tasks: list[Task],
    gemm: Gemm,
    rounds: int,
    repeats: int,
    variants: dict[str, dict[str, Variant]] | None = None,
) -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]], dict[str, float]]:
    """Time every (task, implementation), the fast-path ``variants`` and the GEMMs, interleaved
    call by call.

    Per round and task: one warm-up call of each implementation, then ``repeats`` sweeps that
    call each implementation and the fp32 GEMM once, the order rotated every sweep, so a change
    in the machine's load hits all of them alike. Sample ``j`` of every entry comes from the
    same sweep. The GEMMs also get sweeps of their own (fp32, bf16, int8) at each round's start.
    """
    optimizers = {
        (name, task.key): make_optimizer(models[(name, task.size.label)])
        for task in tasks
        if task.kind == "train"
        for name in names
    }
    data = {task.key: inputs(task.size.config, task.batch, seed=4) for task in tasks}
    variants = variants or {}
    entries = {t.key: [*names, *variants.get(t.key, {}), GEMM_IN_SWEEP] for t in tasks}
    seconds: dict[str, dict[str, list[float]]] = {
        t.key: {n: [] for n in entries[t.key]} for t in tasks
    }
    gemm_seconds: dict[str, list[float]] = {dtype: [] for dtype in gemm.calls}
    losses: dict[str, float] = {}
    for round_index in range(rounds):
        print(f"round {round_index + 1}/{rounds}", flush=True)
        dtypes = list(gemm.calls)
        for dtype in dtypes:
            gemm.runner(dtype)()
        for sweep in range(repeats):
            for dtype in rotated(dtypes, round_index * repeats + sweep):
                gemm_seconds[dtype].append(clock(gemm.runner(dtype))[0])
        for task in tasks:
            images, labels = data[task.key]
            calls: dict[str, Callable[[], object]] = {}
            for name in names:
                model = models[(name, task.size.label)].train(task.kind == "train")
                if task.kind == "infer":
                    calls[name] = functools.partial(infer, model, images)
                else:
                    optimizer = optimizers[(name, task.key)]
                    calls[name] = functools.partial(train_step, model, optimizer, images, labels)
                calls[name]()  # warm-up
            for label, variant in variants.get(task.key, {}).items():
                calls[label] = functools.partial(variant, images, labels)
                calls[label]()  # warm-up (a compiled entry compiles in its first round)
            calls[GEMM_IN_SWEEP] = gemm.runner("fp32")
            for sweep in range(repeats):
                for name in rotated(entries[task.key], round_index * repeats + sweep):
                    elapsed, result = clock(calls[name])
                    seconds[task.key][name].append(elapsed)
                    if task.kind == "train" and name in names:
                        losses[name] = float(result)  # type: ignore[arg-type]
            for name in names:
                models[(name, task.size.label)].eval()
            gc.collect()
    return seconds, gemm_seconds, losses


# ---------------------------------------------------------------------------------------------
# Fast paths: vitlib's one-call optimisations, the same applied to each peer by hand, ONNX
# Runtime, and compiled training. Each entry is a call ``(images, labels) -> object`` timed in
# the same sweeps as the plain implementations.

Variant = Callable[[Tensor, Tensor], object]


def _int8_by_hand(model: nn.Module) -> nn.Module:
    """torch's dynamic int8 quantisation of every nn.Linear: what optimize_for_inference does."""
    quantize: Callable[..., nn.Module] = torch.ao.quantization.quantize_dynamic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def _bf16_call(model: nn.Module) -> Variant:
    """bf16 weights, bf16 images in, float32 logits out: what optimize_for_inference does."""
    converted = copy.deepcopy(model).eval().to(torch.bfloat16)

    def call(images: Tensor, labels: Tensor) -> Tensor:
        return infer(converted, images.to(torch.bfloat16)).float()

    return call


def _plain_call(model: nn.Module) -> Variant:
    return lambda images, labels: infer(model, images)


def _onnxruntime_call(model: vitlib.ViT, threads: int) -> Variant:
    """vitlib.export_onnx, then an onnxruntime CPU session with ``threads`` intra-op threads."""
    import tempfile

    import onnxruntime

    from vitlib.inference.export import export_onnx

    folder = Path(tempfile.mkdtemp(prefix="vitlib-peers-onnx-"))
    path = folder / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def call(images: Tensor, labels: Tensor) -> object:
        return session.run(None, {input_name: images.numpy()})[0]

    return call


def fast_variants(
    models: dict[tuple[str, str], nn.Module],
    tasks: list[Task],
    *,
    inference: bool,
    int8_compiled: bool,
    compiled_training: bool,
    threads: int,
) -> tuple[dict[str, dict[str, Variant]], dict[str, str]]:
    """The fast-path entries per task key, and a note for each one that could not be built.

    With ``inference`` the inference task of the largest size gets: vitlib's
    ``optimize_for_inference`` int8 and bf16 (bf16 only where the CPU has bf16 units) and, with
    ``int8_compiled``, int8 compiled (torchao + inductor with weight freezing); each peer with the
    same int8 / bf16 conversion applied by hand; vitlib exported to ONNX under onnxruntime. With
    ``compiled_training`` the training task gets vitlib under ``torch.compile(fullgraph=True)``
    with the common AdamW, and vitlib eager and compiled with that AdamW's fused kernel (what
    ``vitlib.training.build_optimizer`` picks on the CPU).
    """
    from vitlib.inference.optimize import cpu_has_bf16_units, optimize_for_inference

    found: dict[str, dict[str, Variant]] = {}
    notes: dict[str, str] = {}
    infer_tasks = [task for task in tasks if task.kind == "infer"]
    largest = max(infer_tasks, key=lambda t: t.flops_per_image, default=None)
    bf16 = cpu_has_bf16_units()
    if inference and not bf16:
        notes["bf16"] = "skipped: this CPU has no bf16 units (AVX512-BF16/AMX)"
    for task in tasks:
        entries: dict[str, Variant] = {}
        here = {name: m for (name, label), m in models.items() if label == task.size.label}
        vit = here.get("vitlib")
        if not isinstance(vit, vitlib.ViT):
            vit = None
        if inference and task is largest:
            for name, model in here.items():
                if name != "vitlib":
                    entries[f"{name} int8"] = _plain_call(_int8_by_hand(model))
                    if bf16:
                        entries[f"{name} bf16"] = _bf16_call(model)
            if vit is not None:
                entries["vitlib int8"] = _plain_call(optimize_for_inference(vit, "int8"))
                if bf16:
                    entries["vitlib bf16"] = _plain_call(optimize_for_inference(vit, "bf16"))
                if int8_compiled:
                    fast = optimize_for_inference(vit, "int8", compile=True)
                    entries["vitlib int8 compiled"] = _plain_call(fast)
                try:
                    entries["vitlib onnxruntime"] = _onnxruntime_call(vit, threads)
                except Exception as error:  # reported in the notes, not fatal
                    notes["vitlib onnxruntime"] = f"{type(error).__name__}: {error}"[:200]
        if task.kind == "train" and compiled_training and vit is not None:
            compiled = torch.compile(vit, fullgraph=True)
            step: Callable[..., object] = train_step  # the compiled module stands in for the model
            entries["vitlib compiled"] = functools.partial(step, compiled, make_optimizer(vit))
            # What vitlib's fit runs: the same AdamW update through the fused kernel.
            fused = make_optimizer(vit, fused=True)
            entries["vitlib fused AdamW"] = functools.partial(step, vit, fused)
            entries["vitlib compiled, fused AdamW"] = functools.partial(
                step, compiled, make_optimizer(vit, fused=True)
            )
        if entries:
            found[task.key] = entries
    return found, notes


# ---------------------------------------------------------------------------------------------
# Peak training memory, one fresh subprocess per implementation


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: build one model, then the RSS growth of ``steps`` training steps."""
    fix_malloc()
    torch.set_num_threads(spec["threads"])
    size = tiny() if spec["size"] is None else preset(spec["size"])
    implementations, skipped = load_implementations([spec["name"]])
    if not implementations:
        return {"error": skipped[spec["name"]]}
    impl = implementations[spec["name"]]
    torch.manual_seed(0)
    model = impl.build(size.config).train()
    optimizer = make_optimizer(model)
    images, labels = inputs(size.config, spec["batch"], seed=4)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    gc.collect()
    before = _status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        method = "VmHWM after clear_refs 5, minus VmRSS before"
    except OSError:
        method = "ru_maxrss minus VmRSS before (VmHWM could not be reset: may hold earlier peaks)"
    for _ in range(spec["steps"]):
        train_step(model, optimizer, images, labels)
    if method.startswith("VmHWM"):
        peak = _status_kib("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "peak_growth_mib": (peak - before) / 1024,
        "rss_before_mib": before / 1024,
        "peak_rss_mib": peak / 1024,
        "weights_mib": weights / 2**20,
        "steps": spec["steps"],
        "method": method,
    }


def measure_memory(
    names: list[str], size: Size, batch: int, steps: int, threads: int, quick: bool
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = {
            "name": name,
            "size": None if quick else size.label,
            "batch": batch,
            "steps": steps,
            "threads": threads,
        }
        print(f"memory: {name} in a fresh process", flush=True)
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), _WORKER_FLAG, json.dumps(spec)],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith(_WORKER_MARK)]
        if done.returncode != 0 or not lines:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            results[name] = {"error": f"exit {done.returncode}: {tail[0][:200]}"}
        else:
            results[name] = json.loads(lines[-1].removeprefix(_WORKER_MARK))
    return results


# ---------------------------------------------------------------------------------------------
# Report


def _median_best(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), min(values)


def summarise(
    tasks: list[Task],
    seconds: dict[str, dict[str, list[float]]],
    gemm: Gemm,
    gemm_seconds: dict[str, list[float]],
    plain: list[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per task: each entry's throughput and GEMM share, vitlib over the best plain peer, and
    each fast-path entry over the best plain peer (fp32 eager) and over its like-for-like
    peer entries. ``plain``: the implementations (default: every entry)."""
    gemm_summary: dict[str, Any] = {}
    for dtype, values in gemm_seconds.items():
        median, best = _median_best(values)
        gemm_summary[dtype] = {
            "gflops_median": gemm.ops_per_call(dtype) / median / 1e9,
            "gflops_best": gemm.ops_per_call(dtype) / best / 1e9,
            "n": gemm.n,
            "calls_per_sample": gemm.inner[dtype],
            "seconds": values,
        }
    fp32 = gemm_summary["fp32"]["gflops_median"]
    for dtype in gemm_summary:
        gemm_summary[dtype]["ratio_to_fp32"] = gemm_summary[dtype]["gflops_median"] / fp32
    task_summary: dict[str, Any] = {}
    for task in tasks:
        gemm_in_sweeps = seconds[task.key][GEMM_IN_SWEEP]
        results: dict[str, Any] = {}
        for name, values in seconds[task.key].items():
            if name == GEMM_IN_SWEEP:
                continue
            median, best = _median_best(values)
            throughput = task.batch / median
            # Share of the fp32 GEMM rate timed in the same sweep, then the median over sweeps.
            share = statistics.median(
                (task.batch * task.flops_per_image / model_s) / (gemm.ops_per_call("fp32") / gemm_s)
                for model_s, gemm_s in zip(values, gemm_in_sweeps, strict=True)
            )
            results[name] = {
                "images_per_s_median": throughput,
                "images_per_s_best": task.batch / best,
                "gflops_median": throughput * task.flops_per_image / 1e9,
                "share_of_fp32_gemm": share,
                "share_of_fp32_gemm_by_medians": throughput * task.flops_per_image / 1e9 / fp32,
                "seconds": values,
            }
        peers = {n: r for n, r in results.items() if n in plain and n != "vitlib"}
        ratio = paired = None
        best_peer = None
        if "vitlib" in results and peers:
            best_peer = max(peers, key=lambda n: peers[n]["images_per_s_median"])
            ratio = (
                results["vitlib"]["images_per_s_median"] / peers[best_peer]["images_per_s_median"]
            )
            # The same ratio sweep by sweep (both calls under the same load), then the median.
            sweeps = zip(seconds[task.key][best_peer], seconds[task.key]["vitlib"], strict=True)
            paired = statistics.median(theirs / ours for theirs, ours in sweeps)
        fast: dict[str, Any] = {}
        for label in results:
            if label in plain or best_peer is None:
                continue
            kind = label.split(" ")[1]  # "vitlib int8 compiled" -> int8
            sweeps = zip(seconds[task.key][best_peer], seconds[task.key][label], strict=True)
            alike = {  # the peers' entries of the same kind, for vitlib's entries only
                n: r
                for n, r in results.items()
                if label.startswith("vitlib ") and n.endswith(f" {kind}") and n != label
            }
            best_alike = max(alike, key=lambda n: alike[n]["images_per_s_median"], default=None)
            fast[label] = {
                "over_best_peer_fp32": results[label]["images_per_s_median"]
                / peers[best_peer]["images_per_s_median"],
                "over_best_peer_fp32_paired": statistics.median(t / o for t, o in sweeps),
                "best_peer_alike": best_alike,
                "over_best_peer_alike": None
                if best_alike is None
                else results[label]["images_per_s_median"]
                / alike[best_alike]["images_per_s_median"],
            }
        task_summary[task.key] = {
            "title": task.title,
            "kind": task.kind,
            "size": task.size.label,
            "batch": task.batch,
            "flops_per_image": task.flops_per_image,
            "fp32_gemm_gflops_in_sweeps": gemm.ops_per_call("fp32")
            / statistics.median(gemm_in_sweeps)
            / 1e9,
            "fp32_gemm_seconds_in_sweeps": gemm_in_sweeps,
            "results": results,
            "best_peer": best_peer,
            "vitlib_over_best_peer": ratio,
            "vitlib_over_best_peer_paired": paired,
            "fast_paths": fast,
        }
    return task_summary, gemm_summary


def memory_ratio(memory: dict[str, dict[str, Any]]) -> tuple[str | None, float | None]:
    ok = {n: r["peak_growth_mib"] for n, r in memory.items() if "peak_growth_mib" in r}
    peers = {n: v for n, v in ok.items() if n != "vitlib"}
    if "vitlib" not in ok or not peers:
        return None, None
    best = min(peers, key=peers.__getitem__)
    return best, ok["vitlib"] / peers[best]


def markdown(report: dict[str, Any]) -> str:
    meta, tasks, gemm = report["meta"], report["tasks"], report["gemm"]
    memory, checks = report["memory"], report["checks"]
    lines = [
        f"# vitlib against its peers, {meta['date']}",
        "",
        f"vitlib from {meta['vitlib_source']}; "
        f"torch {meta['torch']}, {meta['threads']} threads, {meta['cpu']}; "
        f"{meta['rounds']} round(s) x {meta['repeats']} sweep(s), each sweep timing every "
        f"implementation once in a rotated order; load average {meta['load_average_start']} "
        f"at the start, {meta['load_average_end']} at the end. malloc: {meta['malloc']}.",
        "",
        "Images/s: median over all timed calls (best call in brackets). % of fp32 GEMM: the "
        "model's FLOP rate over the rate of a fp32 GEMM timed in the same sweep, median over "
        "sweeps (forward FLOPs of the whole network from vitlib.count_flops for everybody, "
        "training = 3x forward; vitlib's forward skips the last block's unread patch tokens, "
        "6% of them, so its share is an effective rate). "
        "Memory: growth of the resident set over the training steps, fresh process per model.",
        "",
    ]
    header = ["implementation"]
    for task in tasks.values():
        header += [f"{task['title']}: img/s", "% of fp32 GEMM"]
    header += [f"peak training memory, MiB (batch {meta['memory_batch']})", "same function"]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 2) + "---|"]
    for name in meta["implementations"]:
        row = [f"{name} {meta['versions'][name]}"]
        for task in tasks.values():
            result = task["results"][name]
            row += [
                f"{result['images_per_s_median']:.2f} ({result['images_per_s_best']:.2f})",
                f"{100 * result['share_of_fp32_gemm']:.0f}%",
            ]
        mem = memory.get(name)
        if mem is None:
            row.append("not measured")
        else:
            row.append(f"{mem['peak_growth_mib']:.0f}" if "peak_growth_mib" in mem else "error")
        row.append(_check_cell(list(checks.get(name, {}).values())))
        lines.append("| " + " | ".join(row) + " |")
    ratio_row = ["**vitlib / best peer** (paired)"]
    for task in tasks.values():
        ratio, paired = task["vitlib_over_best_peer"], task["vitlib_over_best_peer_paired"]
        cell = f"**{ratio:.2f}** ({paired:.2f}), {task['best_peer']}" if ratio else "n/a"
        ratio_row += [cell, ""]
    best, mem_ratio = memory_ratio(memory)
    ratio_row += [f"**{mem_ratio:.2f}**, {best} (lower is better)" if mem_ratio else "n/a", ""]
    lines += [
        "| " + " | ".join(ratio_row) + " |",
        "",
        "vitlib / best peer: ratio of the median throughputs (above 1: vitlib is faster); in "
        "brackets the median over sweeps of the ratio within a sweep, which a drifting load "
        "disturbs less.",
        "",
    ]
    lines += _fast_path_lines(tasks, meta.get("fast_path_notes", {}))
    lines += [
        f"GEMM rates, {gemm['fp32']['n']}^3, in sweeps of their own at each round's start "
        "(the fp32 GEMM inside the models' sweeps: "
        + ", ".join(
            f"{t['size']} {t['kind']} {t['fp32_gemm_gflops_in_sweeps']:.1f}" for t in tasks.values()
        )
        + " GFLOP/s):",
        "",
        "| GEMM | GFLOP/s (GOP/s for int8) | best | x fp32 |",
        "|---|---:|---:|---:|",
    ]
    kernels = {"fp32": "torch.mm fp32", "bf16": "torch.mm bf16", "int8": "torch._int_mm int8"}
    for dtype, rate in gemm.items():
        lines.append(
            f"| {kernels[dtype]} | {rate['gflops_median']:.1f} | {rate['gflops_best']:.1f} "
            f"| {rate['ratio_to_fp32']:.2f} |"
        )
    lines += ["", "Equality checks (weights perturbed, tolerance 1e-4):", ""]
    for name, by_size in checks.items():
        for label, check in by_size.items():
            cell = _check_cell([check])
            lines.append(f"- {name}, {label}: {cell}; {check.get('detail', '')}")
    lines += ["", "Notes:", ""]
    for name in meta["implementations"]:
        note = meta["notes"].get(name, "")
        lines.append(
            f"- {name}: layer-norm eps {meta['layer_norm_eps'][name]:g}"
            + (f"; {note}" if note else "")
        )
    for name, reason in meta["skipped"].items():
        lines.append(f"- {name}: skipped, {reason}")
    for name, mem in memory.items():
        if "error" in mem:
            lines.append(f"- memory of {name}: {mem['error']}")
    if memory:
        method = next((m["method"] for m in memory.values() if "method" in m), "")
        lines.append(f"- memory method: {method}")
    return "\n".join(lines) + "\n"


def _fast_path_lines(tasks: dict[str, Any], notes: dict[str, str]) -> list[str]:
    """The fast-path table: each entry beside the best peer's plain fp32 eager speed."""
    rows = []
    for task in tasks.values():
        for label, fast in task.get("fast_paths", {}).items():
            result = task["results"][label]
            alike = fast["best_peer_alike"]
            rows.append(
                f"| {task['title']} | {label} | {result['images_per_s_median']:.2f} "
                f"({result['images_per_s_best']:.2f}) | **{fast['over_best_peer_fp32']:.2f}** "
                f"({fast['over_best_peer_fp32_paired']:.2f}), {task['best_peer']} | "
                + ("-" if alike is None else f"{fast['over_best_peer_alike']:.2f}, {alike}")
                + " |"
            )
    if not rows:
        return []
    return [
        "Fast paths (int8/bf16: vitlib.optimize_for_inference for vitlib, the same conversion "
        "by hand for each peer; onnxruntime: vitlib.export_onnx under an onnxruntime CPU session "
        "with the same threads; compiled: torch.compile(fullgraph=True)):",
        "",
        "| task | entry | img/s (best) | x best peer's fp32 eager (paired) | x best peer alike |",
        "|---|---|---:|---:|---:|",
        *rows,
        *(f"- {label}: {note}" for label, note in notes.items()),
        "",
    ]


def _check_cell(checks: list[dict[str, Any]]) -> str:
    """One verdict for an implementation's checks at every size: the worst of them."""
    if not checks:
        return "not checked"
    if any(check["status"] == "DIFFERENT" for check in checks):
        return "DIFFERENT " + ", ".join(f"{c.get('max_abs_diff', 0.0):.1e}" for c in checks)
    diffs = [check["max_abs_diff"] for check in checks if "max_abs_diff" in check]
    if not diffs:
        return str(checks[0]["status"])
    return f"same (max diff {max(diffs):.1e})"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _vitlib_source() -> str:
    """The commit vitlib was measured at, and whether its working tree had changes."""
    folder = Path(vitlib.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{folder} (not a git checkout)"
    return f"{folder} at {commit}"


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# ---------------------------------------------------------------------------------------------
# Main


def model_config(sizes: list[Size], label: str) -> vitlib.ViTConfig:
    return next(size.config for size in sizes if size.label == label)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed sweeps per round, one call each (5)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds, each with its own warm-up calls (3)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads for all (2)")
    parser.add_argument(
        "--models",
        default=",".join(IMPLEMENTATIONS),
        help=f"comma-separated implementations (default all: {','.join(IMPLEMENTATIONS)})",
    )
    parser.add_argument("--gemm-size", type=int, default=1024, help="GEMM cube side (1024)")
    parser.add_argument("--memory-steps", type=int, default=3, help="training steps (3)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument(
        "--fast-paths",
        action="store_true",
        help="also time int8/bf16 inference (vitlib's optimize_for_inference, the same by hand "
        "for each peer) and vitlib under onnxruntime, on the largest inference task",
    )
    parser.add_argument(
        "--int8-compiled",
        action="store_true",
        help="with --fast-paths: also vitlib int8 compiled (inductor; minutes to compile)",
    )
    parser.add_argument(
        "--compiled-training",
        action="store_true",
        help="also time vitlib's training compiled and with fused AdamW (minutes)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: a tiny ViT (32px, depth 2, width 64), batch 2/4, 1 round, 1 repeat",
    )
    parser.add_argument("--json", type=Path, help="write the full results (every sample) here")
    parser.add_argument("--markdown", type=Path, help="write the markdown report here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models.split(",")) - set(IMPLEMENTATIONS))
    if unknown:
        parser.error(f"unknown --models {unknown}; choose from {', '.join(IMPLEMENTATIONS)}")
    if args.quick:
        args.rounds, args.repeats, args.gemm_size = 1, 1, min(args.gemm_size, 256)
        args.memory_steps = min(args.memory_steps, 2)
    if min(args.repeats, args.rounds, args.threads, args.gemm_size, args.memory_steps) < 1:
        parser.error("--repeats, --rounds, --threads, --gemm-size, --memory-steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [_WORKER_FLAG]:
        print(_WORKER_MARK + json.dumps(memory_worker(json.loads(argv[1]))), flush=True)
        return 0
    args = parse_args(argv)
    malloc = fix_malloc()
    torch.set_num_threads(args.threads)
    load_start = _load_average()
    started = time.perf_counter()
    names = [name for name in IMPLEMENTATIONS if name in args.models.split(",")]
    implementations, skipped = load_implementations(names)
    for name, reason in skipped.items():
        print(f"note: {name} skipped ({reason})", flush=True)
    if not implementations:
        print("nothing to measure", file=sys.stderr)
        return 1
    print("measuring: " + ", ".join(f"{n} {i.version}" for n, i in implementations.items()))

    if args.quick:
        small = tiny()
        tasks = [Task("infer-tiny", "infer", small, 2), Task("train-tiny", "train", small, 4)]
        memory_size, memory_batch = small, 4
    else:
        vit_s, vit_b = preset("ViT-S/16"), preset("ViT-B/16")
        tasks = [
            Task("infer-S16", "infer", vit_s, 8),
            Task("infer-B16", "infer", vit_b, 8),
            Task("train-S16", "train", vit_s, 16),
        ]
        memory_size, memory_batch = vit_s, 16

    sizes = list({task.size.label: task.size for task in tasks}.values())
    models = build_models(implementations, sizes)
    checks: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in implementations}
    for (name, label), model in models.items():
        result = implementations[name].check(model, model_config(sizes, label))
        checks[name][label] = result
        print(f"same function? {name} {label}: {_check_cell([result])}", flush=True)

    variants: dict[str, dict[str, Variant]] = {}
    variant_notes: dict[str, str] = {}
    if args.fast_paths or args.compiled_training:
        variants, variant_notes = fast_variants(
            models,
            tasks,
            inference=args.fast_paths,
            int8_compiled=args.int8_compiled,
            compiled_training=args.compiled_training,
            threads=args.threads,
        )
        for label, note in variant_notes.items():
            print(f"note: {label}: {note}", flush=True)
    gemm = Gemm(args.gemm_size)
    seconds, gemm_seconds, losses = run_rounds(
        models, list(implementations), tasks, gemm, args.rounds, args.repeats, variants
    )
    for name, loss in losses.items():
        if not math.isfinite(loss):
            print(f"warning: {name}'s training loss is {loss}", flush=True)
    memory = (
        {}
        if args.no_memory
        else measure_memory(
            list(implementations),
            memory_size,
            memory_batch,
            args.memory_steps,
            args.threads,
            args.quick,
        )
    )
    task_summary, gemm_summary = summarise(
        tasks, seconds, gemm, gemm_seconds, plain=list(implementations)
    )
    report: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "vitlib_source": _vitlib_source(),
            "python": platform.python_version(),
            "cpu": _cpu_name(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "rounds": args.rounds,
            "repeats": args.repeats,
            "quick": args.quick,
            "memory_batch": memory_batch,
            "malloc": malloc,
            "load_average_start": load_start,
            "load_average_end": _load_average(),
            "wall_s": time.perf_counter() - started,
            "implementations": list(implementations),
            "versions": {n: i.version for n, i in implementations.items()},
            "layer_norm_eps": {n: i.layer_norm_eps for n, i in implementations.items()},
            "notes": {n: i.note for n, i in implementations.items()},
            "skipped": skipped,
            "final_training_loss": losses,
            "optimizer": "torch.optim.AdamW(lr=1e-4, weight_decay=0.05), all parameters",
            "fast_path_notes": variant_notes,
        },
        "checks": checks,
        "tasks": task_summary,
        "gemm": gemm_summary,
        "memory": memory,
    }
    text = markdown(report)
    print()
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    failed = [
        f"{name} {label}"
        for name, by_size in checks.items()
        for label, check in by_size.items()
        if check["status"] == "DIFFERENT"
    ]
    if failed:
        print(f"equality check FAILED for {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
