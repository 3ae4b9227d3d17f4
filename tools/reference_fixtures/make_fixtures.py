"""Write the timm / torchvision / Google-npz reference fixtures used by vitlib's parity tests.

Run this inside the separate reference venv described in ``README.md`` beside this file (it
needs ``timm`` and ``torchvision``, which cannot be imported beside the CPU torch of the
project venv). It builds tiny models of the real libraries, re-randomises every float
parameter and buffer with a fixed seed, and writes, per fixture, under
``tests/fixtures/reference/<name>/``:

* ``state_dict.safetensors``: the foreign model's ``state_dict()`` with the library's own key
  names (``weights.npz`` in Google's original ViT layout for the ``google_*`` fixtures);
* ``io.safetensors``: ``input`` (float32, (2, C, H, W)) and ``logits`` (eval mode, no_grad);
* ``meta.json``: library and versions, the exact constructor kwargs and the architecture in
  plain words;
* ``hub/`` (timm fixtures only): exactly what timm's own
  ``timm.models.save_for_hf(model, hub, safe_serialization=True)`` writes for that model,
  ``config.json`` (with ``global_pool``) and ``model.safetensors``, so a reader can load a timm
  checkpoint folder without being told its pooling.

Before overwriting, every tensor about to be written is compared with the fixture already on
disk; a difference stops the script unless ``--allow-changes`` is given. Every fixture is then
re-loaded from disk into a fresh model and must reproduce ``logits`` bit for bit (the ``hub/``
folders through timm's own ``local-dir:`` loader); the script exits non-zero on any failed
check.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torchvision
from safetensors.torch import load_file, save_file
from timm.models import vision_transformer as timm_vit
from torch import nn
from torchvision.models import vision_transformer as tv_vit

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "reference"

BATCH = 2
PARAM_SCALE = 0.2  # std of re-randomised weights; LayerNorm weights are 1 + PARAM_SCALE * randn
PARITY_TOL = 1e-5  # max abs logit difference allowed between two implementations

# Every timm model is built by timm's factory, so it carries the ``pretrained_cfg`` and the
# recorded model args that ``save_for_hf`` needs. The registered name only picks the entry
# point: all its architecture args are overridden by the fixture's kwargs. Its size letter
# matches the fixtures' num_heads=3 (Ti has 3 heads in timm's/DeiT's sizes).
TIMM_ARCHITECTURE = "vit_tiny_patch16_224"
TIMM_POOL_NAMES = {"token": "token", "avg": "mean"}  # timm global_pool -> meta.json "pool"
HUB_DIR = "hub"
HUB_FILES = frozenset({"config.json", "model.safetensors"})

NpzDict = dict[str, np.ndarray]


# --------------------------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------------------------


def randomize_(model: nn.Module, seed: int) -> None:
    """Overwrite every float parameter and buffer with seeded random values, in place.

    LayerNorm weights get ``1 + s * randn`` and everything else ``s * randn`` (biases, class
    token, position embedding and head included), so that a mapping bug such as a transposed
    or swapped tensor, or a bias left at zero, changes the logits.
    """
    gen = torch.Generator().manual_seed(seed)
    ln_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm)}
    tensors = [p for _, p in model.named_parameters()] + [b for _, b in model.named_buffers()]
    with torch.no_grad():
        for t in tensors:
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t.dtype)
            t.copy_(1.0 + PARAM_SCALE * noise if id(t) in ln_weights else PARAM_SCALE * noise)


def create_timm(kw: Mapping[str, Any]) -> timm_vit.VisionTransformer:
    """Build a timm ViT through ``timm.create_model`` with ``kw`` overriding the architecture."""
    model = timm.create_model(TIMM_ARCHITECTURE, pretrained=False, **kw)
    if type(model) is not timm_vit.VisionTransformer:
        raise SystemExit(f"{TIMM_ARCHITECTURE}: expected a VisionTransformer, got {type(model)}")
    return model


def make_input(channels: int, height: int, width: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((BATCH, channels, height, width), generator=gen, dtype=torch.float32)


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x).detach().clone().contiguous()


def saveable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def check_close(what: str, a: torch.Tensor, b: torch.Tensor, tol: float = PARITY_TOL) -> float:
    diff = max_abs_diff(a, b)
    print(f"  {what}: max abs diff {diff:.3e}")
    if not diff <= tol:
        raise SystemExit(f"FAILED: {what}: max abs diff {diff:.3e} > {tol:.0e}")
    return diff


def layer_norm_eps(model: nn.Module) -> float:
    eps = {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)}
    if len(eps) != 1:
        raise SystemExit(f"expected a single LayerNorm eps, found {sorted(eps)}")
    return float(eps.pop())


def jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Google (vit_jax / big_vision) npz layout
# --------------------------------------------------------------------------------------------


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def timm_to_google(model: timm_vit.VisionTransformer) -> NpzDict:
    """Export a (class-token, token-pool) timm ViT into Google's original ViT npz layout.

    The inverse of ``timm.models.vision_transformer._load_weights`` for the non-big_vision
    layout. Flax ``Dense`` kernels are (in, out), i.e. the transpose of ``nn.Linear.weight``;
    the patch-embedding ``Conv`` kernel is (ph, pw, C, D); attention projections are
    ``DenseGeneral`` with query/key/value kernels (D, heads, head_dim) and biases
    (heads, head_dim), and the output kernel (heads, head_dim, D).
    """
    d = model.embed_dim
    out: NpzDict = {
        "embedding/kernel": _np(model.patch_embed.proj.weight.permute(2, 3, 1, 0)),
        "embedding/bias": _np(model.patch_embed.proj.bias),
        "cls": _np(model.cls_token),
        "Transformer/posembed_input/pos_embedding": _np(model.pos_embed),
    }
    for i, block in enumerate(model.blocks):
        heads = block.attn.num_heads
        hd = d // heads
        p = f"Transformer/encoderblock_{i}/"
        mha = p + "MultiHeadDotProductAttention_1/"
        out[p + "LayerNorm_0/scale"] = _np(block.norm1.weight)
        out[p + "LayerNorm_0/bias"] = _np(block.norm1.bias)
        q_w, k_w, v_w = block.attn.qkv.weight.chunk(3, dim=0)  # each (D_out, D_in)
        q_b, k_b, v_b = block.attn.qkv.bias.chunk(3, dim=0)
        for name, w, b in (("query", q_w, q_b), ("key", k_w, k_b), ("value", v_w, v_b)):
            out[mha + f"{name}/kernel"] = _np(w.T.reshape(d, heads, hd))
            out[mha + f"{name}/bias"] = _np(b.reshape(heads, hd))
        out[mha + "out/kernel"] = _np(block.attn.proj.weight.T.reshape(heads, hd, d))
        out[mha + "out/bias"] = _np(block.attn.proj.bias)
        out[p + "LayerNorm_2/scale"] = _np(block.norm2.weight)
        out[p + "LayerNorm_2/bias"] = _np(block.norm2.bias)
        for r, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            out[p + f"MlpBlock_3/Dense_{r}/kernel"] = _np(fc.weight.T)
            out[p + f"MlpBlock_3/Dense_{r}/bias"] = _np(fc.bias)
    out["Transformer/encoder_norm/scale"] = _np(model.norm.weight)
    out["Transformer/encoder_norm/bias"] = _np(model.norm.bias)
    if isinstance(model.head, nn.Linear):
        out["head/kernel"] = _np(model.head.weight.T)
        out["head/bias"] = _np(model.head.bias)
    return out


def google_to_torchvision(w: Mapping[str, np.ndarray], num_layers: int) -> dict[str, torch.Tensor]:
    """Map a Google-layout npz onto ``torchvision.models.VisionTransformer`` state-dict keys.

    Written independently of timm's loader; handles the optional ``pre_logits`` Dense layer
    (torchvision's ``heads.pre_logits``, followed by tanh in both implementations).
    """

    def t(key: str) -> torch.Tensor:
        return torch.from_numpy(np.array(w[key], dtype=np.float32))

    def dense(key: str) -> torch.Tensor:  # Flax (in, out) -> torch (out, in)
        return t(key).T.contiguous()

    sd: dict[str, torch.Tensor] = {
        "class_token": t("cls"),
        "conv_proj.weight": t("embedding/kernel").permute(3, 2, 0, 1).contiguous(),
        "conv_proj.bias": t("embedding/bias"),
        "encoder.pos_embedding": t("Transformer/posembed_input/pos_embedding"),
        "encoder.ln.weight": t("Transformer/encoder_norm/scale"),
        "encoder.ln.bias": t("Transformer/encoder_norm/bias"),
        "heads.head.weight": dense("head/kernel"),
        "heads.head.bias": t("head/bias"),
    }
    if "pre_logits/kernel" in w:
        sd["heads.pre_logits.weight"] = dense("pre_logits/kernel")
        sd["heads.pre_logits.bias"] = t("pre_logits/bias")
    for i in range(num_layers):
        src = f"Transformer/encoderblock_{i}/"
        mha = src + "MultiHeadDotProductAttention_1/"
        dst = f"encoder.layers.encoder_layer_{i}."
        sd[dst + "ln_1.weight"] = t(src + "LayerNorm_0/scale")
        sd[dst + "ln_1.bias"] = t(src + "LayerNorm_0/bias")
        qkv = [t(mha + f"{n}/kernel").flatten(1).T for n in ("query", "key", "value")]
        sd[dst + "self_attention.in_proj_weight"] = torch.cat(qkv).contiguous()
        sd[dst + "self_attention.in_proj_bias"] = torch.cat(
            [t(mha + f"{n}/bias").reshape(-1) for n in ("query", "key", "value")]
        )
        out_k = t(mha + "out/kernel")  # (heads, head_dim, D) -> (D_in, D_out) -> (D_out, D_in)
        out_w = out_k.reshape(-1, out_k.shape[-1]).T.contiguous()
        sd[dst + "self_attention.out_proj.weight"] = out_w
        sd[dst + "self_attention.out_proj.bias"] = t(mha + "out/bias")
        sd[dst + "ln_2.weight"] = t(src + "LayerNorm_2/scale")
        sd[dst + "ln_2.bias"] = t(src + "LayerNorm_2/bias")
        sd[dst + "mlp.0.weight"] = dense(src + "MlpBlock_3/Dense_0/kernel")
        sd[dst + "mlp.0.bias"] = t(src + "MlpBlock_3/Dense_0/bias")
        sd[dst + "mlp.3.weight"] = dense(src + "MlpBlock_3/Dense_1/kernel")
        sd[dst + "mlp.3.bias"] = t(src + "MlpBlock_3/Dense_1/bias")
    return sd


def save_npz(path: Path, w: NpzDict) -> None:
    for k, v in w.items():
        if v.dtype != np.float32:
            raise SystemExit(f"npz array {k} is {v.dtype}, expected float32")
    np.savez(path, **w)  # type: ignore[arg-type]


def load_npz(path: Path) -> NpzDict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# --------------------------------------------------------------------------------------------
# Fixture description and writing
# --------------------------------------------------------------------------------------------


@dataclass
class Fixture:
    name: str
    library: str
    library_version: str
    constructor: dict[str, Any]
    config: dict[str, Any]
    notes: str
    input: torch.Tensor
    logits: torch.Tensor
    state_dict: dict[str, torch.Tensor] | None = None  # -> state_dict.safetensors
    npz: NpzDict | None = None  # -> weights.npz
    hub_model: nn.Module | None = None  # -> hub/ via timm.models.save_for_hf


def _tensor_changes(
    what: str, old: Mapping[str, torch.Tensor], new: Mapping[str, torch.Tensor]
) -> list[str]:
    if set(old) != set(new):
        return [f"{what}: keys {sorted(set(old) ^ set(new))} added or removed"]
    return [
        f"{what}[{k}]"
        for k in sorted(old)
        if old[k].dtype != new[k].dtype or not torch.equal(old[k], new[k])
    ]


def changes_on_disk(d: Path, fx: Fixture) -> list[str]:
    """Name every tensor of ``fx`` that differs from the fixture already in ``d`` (if any)."""
    changes: list[str] = []
    new_io = {"input": fx.input, "logits": fx.logits}
    if (d / "io.safetensors").exists():
        changes += _tensor_changes("io", load_file(str(d / "io.safetensors")), new_io)
    if fx.state_dict is not None and (d / "state_dict.safetensors").exists():
        old = load_file(str(d / "state_dict.safetensors"))
        changes += _tensor_changes("state_dict", old, fx.state_dict)
    if fx.npz is not None and (d / "weights.npz").exists():
        old_npz = {k: torch.from_numpy(v) for k, v in load_npz(d / "weights.npz").items()}
        new_npz = {k: torch.from_numpy(v) for k, v in fx.npz.items()}
        changes += _tensor_changes("weights.npz", old_npz, new_npz)
    return changes


def write_hub(d: Path, model: nn.Module) -> None:
    """Write ``d/hub`` with timm's own ``save_for_hf`` and nothing else."""
    hub = d / HUB_DIR
    if hub.exists():
        for f in hub.iterdir():
            if f.name not in HUB_FILES:
                raise SystemExit(f"{hub}: unexpected {f.name}; remove it by hand")
            f.unlink()
    timm.models.save_for_hf(model, str(hub), safe_serialization=True)


def write_fixture(root: Path, fx: Fixture, allow_changes: bool) -> Path:
    d = root / fx.name
    changes = changes_on_disk(d, fx)
    if changes and not allow_changes:
        raise SystemExit(
            f"{fx.name}: regenerated tensors differ from the fixture on disk: "
            f"{', '.join(changes)}; find out why, or pass --allow-changes if intended"
        )
    d.mkdir(parents=True, exist_ok=True)
    for stale in ("state_dict.safetensors", "weights.npz"):
        (d / stale).unlink(missing_ok=True)
    if fx.state_dict is not None:
        save_file(fx.state_dict, str(d / "state_dict.safetensors"), metadata={"format": "pt"})
    if fx.npz is not None:
        save_npz(d / "weights.npz", fx.npz)
    io = {"input": fx.input.contiguous(), "logits": fx.logits.contiguous()}
    save_file(io, str(d / "io.safetensors"), metadata={"format": "pt"})
    meta = {
        "library": fx.library,
        "library_version": fx.library_version,
        "torch_version": torch.__version__,
        "constructor": {k: jsonable(v) for k, v in fx.constructor.items()},
        "config": fx.config,
        "notes": fx.notes,
    }
    (d / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if fx.hub_model is not None:
        write_hub(d, fx.hub_model)
    return d


def timm_config(model: timm_vit.VisionTransformer, kw: Mapping[str, Any]) -> dict[str, Any]:
    pool = TIMM_POOL_NAMES[model.global_pool]
    return {
        "img_size": jsonable(kw["img_size"]),
        "patch_size": kw["patch_size"],
        "in_channels": kw["in_chans"],
        "embedding_dim": kw["embed_dim"],
        "num_layers": kw["depth"],
        "num_heads": kw["num_heads"],
        "mlp_size": model.blocks[0].mlp.fc1.out_features,
        "num_classes": kw["num_classes"],
        "representation_size": None,
        "layer_norm_eps": layer_norm_eps(model),
        "pool": pool,
        "qkv_bias": model.blocks[0].attn.qkv.bias is not None,
    }


def torchvision_config(model: tv_vit.VisionTransformer, kw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "img_size": kw["image_size"],
        "patch_size": kw["patch_size"],
        "in_channels": 3,
        "embedding_dim": kw["hidden_dim"],
        "num_layers": kw["num_layers"],
        "num_heads": kw["num_heads"],
        "mlp_size": kw["mlp_dim"],
        "num_classes": kw["num_classes"],
        "representation_size": kw.get("representation_size"),
        "layer_norm_eps": layer_norm_eps(model),
        "pool": "token",
        "qkv_bias": True,
    }


# --------------------------------------------------------------------------------------------
# The fixtures
# --------------------------------------------------------------------------------------------

TIMM_TOKEN_KW: dict[str, Any] = {
    "img_size": 32,
    "patch_size": 8,
    "in_chans": 3,
    "embed_dim": 48,
    "depth": 2,
    "num_heads": 3,
    "mlp_ratio": 2.0,
    "num_classes": 5,
    "qkv_bias": True,
}
TIMM_NONSQUARE_KW: dict[str, Any] = {
    **TIMM_TOKEN_KW,
    "img_size": (32, 48),
    "in_chans": 1,
    "num_classes": 4,
    "global_pool": "avg",
    "fc_norm": False,
}
TV_PLAIN_KW: dict[str, Any] = {
    "image_size": 32,
    "patch_size": 8,
    "num_layers": 2,
    "num_heads": 3,
    "hidden_dim": 48,
    "mlp_dim": 96,
    "num_classes": 5,
}
TV_PRELOGITS_KW: dict[str, Any] = {**TV_PLAIN_KW, "representation_size": 24}

COMMON_NOTES = (
    "Weights are random (seeded), not pretrained: every float parameter/buffer was re-drawn as "
    f"{PARAM_SCALE}*randn (LayerNorm weights 1+{PARAM_SCALE}*randn). logits = model.eval() "
    "output on input under torch.no_grad(), float32 on CPU. GELU is exact (erf)."
)


def build_timm_token() -> Fixture:
    torch.manual_seed(0)
    model = create_timm(TIMM_TOKEN_KW)
    randomize_(model, seed=1001)
    x = make_input(3, 32, 32, seed=2001)
    logits = run(model, x)
    return Fixture(
        name="timm_token",
        library="timm",
        library_version=timm.__version__,
        constructor=TIMM_TOKEN_KW,
        config=timm_config(model, TIMM_TOKEN_KW),
        notes=COMMON_NOTES
        + " timm pre-norm ViT with class token, learned pos_embed over [cls]+patches, "
        "final norm before pooling, pooled feature = normed class token (global_pool='token'). "
        "Attention qkv is one fused Linear (rows ordered q, k, v; heads contiguous within each).",
        input=x,
        logits=logits,
        state_dict=saveable_state_dict(model),
        hub_model=model,
    )


def build_timm_nonsquare() -> Fixture:
    torch.manual_seed(0)
    model = create_timm(TIMM_NONSQUARE_KW)
    randomize_(model, seed=1002)
    x = make_input(1, 32, 48, seed=2002)
    logits = run(model, x)

    # Pin down what global_pool='avg' with fc_norm=False does in this timm version.
    if not isinstance(model.norm, nn.LayerNorm) or not isinstance(model.fc_norm, nn.Identity):
        raise SystemExit("timm_nonsquare: expected final norm before pooling and no fc_norm")
    with torch.no_grad():
        tokens = model.forward_features(x)  # (B, 1 + N, D), final norm already applied
        excl = model.head(tokens[:, 1:].mean(dim=1))
        incl = model.head(tokens.mean(dim=1))
    check_close("timm avg pool == head(mean(norm(tokens)[:, 1:]))", logits, excl, tol=0.0)
    print(f"  (mean including class token would differ by {max_abs_diff(logits, incl):.3e})")
    if model.pool_include_prefix:
        raise SystemExit("timm_nonsquare: pool_include_prefix unexpectedly True")

    return Fixture(
        name="timm_nonsquare",
        library="timm",
        library_version=timm.__version__,
        constructor=TIMM_NONSQUARE_KW,
        config=timm_config(model, TIMM_NONSQUARE_KW),
        notes=COMMON_NOTES
        + " Non-square input (H, W) = (32, 48): a 4 x 6 patch grid, 24 patches, pos_embed "
        "(1, 25, 48) in row-major (h, w) order after the class token. A class token IS present "
        "(cls_token key, it takes part in attention) but pooling is the mean over the 24 patch "
        "tokens only, class token excluded (timm global_pool='avg', pool_include_prefix=False). "
        "fc_norm=False keeps the final LayerNorm `norm` applied to every token BEFORE the mean "
        "(timm's default for 'avg' would instead be fc_norm after the mean). Verified in the "
        "script: logits == head(mean(norm(tokens)[:, 1:], dim=1)) exactly.",
        input=x,
        logits=logits,
        state_dict=saveable_state_dict(model),
        hub_model=model,
    )


def build_torchvision(name: str, kw: dict[str, Any], seed: int) -> Fixture:
    torch.manual_seed(0)
    model = tv_vit.VisionTransformer(**kw)
    randomize_(model, seed=seed)
    x = make_input(3, kw["image_size"], kw["image_size"], seed=seed + 1000)
    logits = run(model, x)
    model.train()  # all dropout rates are 0: train mode only switches off the fused MHA path
    with torch.no_grad():
        check_close(f"{name}: eval (fast path) vs train-mode (unfused) MHA", model(x), logits)
    model.eval()
    notes = (
        COMMON_NOTES + " torchvision pre-norm ViT: class_token (1,1,D), encoder.pos_embedding over "
        "[cls]+patches, nn.MultiheadAttention with packed in_proj (q, k, v rows), encoder.ln "
        "final norm, pooled feature = normed class token. mlp.0 / mlp.3 are the two Linear "
        "layers of MLPBlock (mlp.1 GELU, mlp.2/mlp.4 dropout). Eval-mode logits (where "
        "nn.MultiheadAttention may take PyTorch's fused fast path) agree with the "
        "unfused train-mode path (dropout 0) to <= 1e-5, checked by the script."
    )
    if kw.get("representation_size") is not None:
        notes += (
            " Has the pre-logits layer: heads.pre_logits Linear(D, R) then tanh, then "
            "heads.head Linear(R, num_classes)."
        )
    return Fixture(
        name=name,
        library="torchvision",
        library_version=torchvision.__version__,
        constructor=kw,
        config=torchvision_config(model, kw),
        notes=notes,
        input=x,
        logits=logits,
        state_dict=saveable_state_dict(model),
    )


def build_google_npz(tmp: Path) -> Fixture:
    torch.manual_seed(0)
    source = create_timm(TIMM_TOKEN_KW)
    randomize_(source, seed=1005)
    x = make_input(3, 32, 32, seed=2005)
    source_logits = run(source, x)
    npz = timm_to_google(source)
    path = tmp / "google_npz.npz"
    save_npz(path, npz)

    fresh = create_timm(TIMM_TOKEN_KW)
    fresh.load_pretrained(str(path))  # timm's own Google-npz loader (_load_weights)
    logits = run(fresh, x)
    check_close("google_npz: timm-loaded npz vs source timm model", logits, source_logits)

    # Independent check of this script's npz -> torchvision mapping on the same file.
    tv = tv_vit.VisionTransformer(**TV_PLAIN_KW)
    tv.load_state_dict(google_to_torchvision(load_npz(path), TV_PLAIN_KW["num_layers"]))
    check_close("google_npz: torchvision via own mapping vs timm loader", run(tv, x), logits)

    return Fixture(
        name="google_npz",
        library="timm",
        library_version=timm.__version__,
        constructor=TIMM_TOKEN_KW,
        config=timm_config(fresh, TIMM_TOKEN_KW),
        notes=COMMON_NOTES
        + " weights.npz is Google's original vit_jax ViT checkpoint layout (np.savez, plain "
        "float32 arrays, no pickles), exported by this script from a random timm model of the "
        "timm_token architecture. logits are from a fresh timm VisionTransformer loaded with "
        "timm's own npz loader (model.load_pretrained -> _load_weights); they match the source "
        "model (<= 1e-5) and torchvision loaded via this script's own mapping. Shapes: "
        "embedding/kernel (ph, pw, C, D); cls (1, 1, D); pos_embedding (1, 1 + N, D); "
        "query|key|value kernel (D, heads, head_dim), bias (heads, head_dim); out/kernel "
        "(heads, head_dim, D); Dense kernels (in, out); LayerNorm scale/bias (D,). Flax "
        "LayerNorm eps is 1e-6, matching timm and torchvision.",
        input=x,
        logits=logits,
        npz=npz,
    )


def build_google_npz_prelogits(tmp: Path) -> Fixture:
    kw = TV_PRELOGITS_KW
    d, r, c = kw["hidden_dim"], kw["representation_size"], kw["num_classes"]

    # Encoder weights: a random timm body (no head) exported to the Google layout; the
    # pre_logits and head Dense layers are drawn directly in the Google (in, out) layout.
    torch.manual_seed(0)
    body = create_timm({**TIMM_TOKEN_KW, "num_classes": 0})
    randomize_(body, seed=1006)
    npz = timm_to_google(body)
    gen = torch.Generator().manual_seed(1106)

    def draw(*shape: int) -> np.ndarray:
        return _np(PARAM_SCALE * torch.randn(shape, generator=gen))

    npz["pre_logits/kernel"] = draw(d, r)
    npz["pre_logits/bias"] = draw(r)
    npz["head/kernel"] = draw(r, c)
    npz["head/bias"] = draw(c)
    path = tmp / "google_npz_prelogits.npz"
    save_npz(path, npz)
    x = make_input(3, kw["image_size"], kw["image_size"], seed=2006)

    # Reference: torchvision with representation_size, loaded by this script's own mapping.
    tv = tv_vit.VisionTransformer(**kw)
    tv.load_state_dict(google_to_torchvision(load_npz(path), kw["num_layers"]))
    logits = run(tv, x)

    # Cross-check: timm's loader for the encoder (timm no longer loads pre_logits: its
    # VisionTransformer has no representation layer and _load_weights skips the keys), then
    # pre_logits + tanh + head applied by hand with Flax Dense semantics (x @ kernel + bias).
    timm_body = create_timm({**TIMM_TOKEN_KW, "num_classes": 0})
    timm_body.load_pretrained(str(path))
    feats = run(timm_body, x)  # (B, D) normed class token
    w = {k: torch.from_numpy(v) for k, v in npz.items()}
    pre = torch.tanh(feats @ w["pre_logits/kernel"] + w["pre_logits/bias"])
    cross = pre @ w["head/kernel"] + w["head/bias"]
    check_close(
        "google_npz_prelogits: torchvision (own mapping) vs timm body + manual head", logits, cross
    )

    return Fixture(
        name="google_npz_prelogits",
        library="torchvision",
        library_version=torchvision.__version__,
        constructor=kw,
        config=torchvision_config(tv, kw),
        notes=COMMON_NOTES
        + " weights.npz is Google's original vit_jax ViT layout (as google_npz) plus "
        "pre_logits/kernel (D, R) and pre_logits/bias (R,), as in the ImageNet-21k "
        "checkpoints; the model applies tanh after pre_logits, and head/kernel is (R, "
        "num_classes). Reference logits come from torchvision.models.VisionTransformer with "
        "representation_size=R, loaded from the npz by this script's own mapping "
        "(google_to_torchvision). timm " + timm.__version__ + " cannot load pre_logits (its "
        "ViT has no representation layer; _load_weights ignores the keys), so the cross-check "
        "loads the encoder with timm's npz loader (num_classes=0) and applies pre_logits, tanh "
        "and head by hand; it agrees to <= 1e-5.",
        input=x,
        logits=logits,
        npz=npz,
    )


# --------------------------------------------------------------------------------------------
# Verification from disk
# --------------------------------------------------------------------------------------------


def _timm_from_meta(meta: Mapping[str, Any]) -> timm_vit.VisionTransformer:
    kw = dict(meta["constructor"])
    if isinstance(kw["img_size"], list):
        kw["img_size"] = tuple(kw["img_size"])
    return timm_vit.VisionTransformer(**kw)


def _torchvision_from_meta(meta: Mapping[str, Any]) -> tv_vit.VisionTransformer:
    return tv_vit.VisionTransformer(**meta["constructor"])


def reload_model(d: Path, meta: Mapping[str, Any]) -> nn.Module:
    """Rebuild the fixture's model from files on disk only."""
    builders: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
        "timm": _timm_from_meta,
        "torchvision": _torchvision_from_meta,
    }
    model = builders[meta["library"]](meta)
    if (d / "state_dict.safetensors").exists():
        model.load_state_dict(load_file(str(d / "state_dict.safetensors")), strict=True)
    elif meta["library"] == "timm":
        model.load_pretrained(str(d / "weights.npz"))  # type: ignore[operator]
    else:
        sd = google_to_torchvision(load_npz(d / "weights.npz"), meta["config"]["num_layers"])
        model.load_state_dict(sd, strict=True)
    return model


def verify_hub(d: Path, meta: Mapping[str, Any], io: Mapping[str, torch.Tensor]) -> str:
    """Check ``d/hub`` as timm reads it; return the ``global_pool`` its config.json states."""
    hub = d / HUB_DIR
    found = {f.name for f in hub.iterdir()}
    if found != HUB_FILES:
        raise SystemExit(f"{hub}: holds {sorted(found)}, expected {sorted(HUB_FILES)}")
    config = json.loads((hub / "config.json").read_text())
    pools = {config.get("global_pool"), config.get("model_args", {}).get("global_pool")}
    expected = {v: k for k, v in TIMM_POOL_NAMES.items()}[meta["config"]["pool"]]
    if pools != {expected}:
        raise SystemExit(
            f"{hub}/config.json: global_pool {sorted(map(str, pools))}, expected {expected}"
        )
    weights = load_file(str(hub / "model.safetensors"))
    changes = _tensor_changes("hub", load_file(str(d / "state_dict.safetensors")), weights)
    if changes:
        raise SystemExit(f"{hub}/model.safetensors differs from state_dict.safetensors: {changes}")
    model = timm.create_model(f"local-dir:{hub}", pretrained=True)  # timm's own reader, untold
    logits = run(model, io["input"])
    if not torch.equal(logits, io["logits"]):
        raise SystemExit(f"{hub}: timm local-dir logits differ from io.safetensors")
    return expected


def verify(d: Path) -> tuple[int, int, tuple[int, ...], str | None]:
    """Re-run the fixture in ``d`` from disk; return keys, bytes, logits shape, hub pool."""
    meta = json.loads((d / "meta.json").read_text())
    io = load_file(str(d / "io.safetensors"))
    if set(io) != {"input", "logits"}:
        raise SystemExit(f"{d.name}: io.safetensors keys {sorted(io)}")
    for k, v in io.items():
        if v.dtype != torch.float32:
            raise SystemExit(f"{d.name}: {k} is {v.dtype}")
    logits = run(reload_model(d, meta), io["input"])
    if not torch.equal(logits, io["logits"]):
        raise SystemExit(
            f"{d.name}: re-run logits differ (max {max_abs_diff(logits, io['logits']):.3e})"
        )
    if (d / "state_dict.safetensors").exists():
        n_keys = len(load_file(str(d / "state_dict.safetensors")))
    else:
        npz = load_npz(d / "weights.npz")
        if any(v.dtype != np.float32 for v in npz.values()):
            raise SystemExit(f"{d.name}: weights.npz holds non-float32 arrays")
        n_keys = len(npz)
    n_bytes = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
    if not math.isfinite(float(io["logits"].abs().max())):
        raise SystemExit(f"{d.name}: non-finite logits")
    hub_pool = None
    if (d / HUB_DIR).exists():
        hub_pool = verify_hub(d, meta, io)
        n_bytes += sum(f.stat().st_size for f in (d / HUB_DIR).iterdir())
    return n_keys, n_bytes, tuple(io["logits"].shape), hub_pool


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture root directory")
    parser.add_argument(
        "--allow-changes",
        action="store_true",
        help="overwrite fixtures whose regenerated tensors differ from those on disk",
    )
    args = parser.parse_args(argv)
    root: Path = args.out
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / ".tmp"
    tmp.mkdir(exist_ok=True)
    print(
        f"torch {torch.__version__}, timm {timm.__version__}, "
        f"torchvision {torchvision.__version__}, numpy {np.__version__}"
    )

    builders: list[Callable[[], Fixture]] = [
        build_timm_token,
        build_timm_nonsquare,
        lambda: build_torchvision("torchvision_plain", TV_PLAIN_KW, seed=1003),
        lambda: build_torchvision("torchvision_prelogits", TV_PRELOGITS_KW, seed=1004),
        lambda: build_google_npz(tmp),
        lambda: build_google_npz_prelogits(tmp),
    ]
    written: list[Path] = []
    try:
        for build in builders:
            fx = build()
            print(
                f"built {fx.name}: logits {tuple(fx.logits.shape)}, "
                f"|logits| max {float(fx.logits.abs().max()):.3f}"
            )
            written.append(write_fixture(root, fx, args.allow_changes))
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()

    print()
    print(f"{'fixture':<24}{'keys':>6}{'bytes':>10}  logits")
    total = 0
    hub_pools: dict[str, str] = {}
    for d in written:
        n_keys, n_bytes, shape, hub_pool = verify(d)
        total += n_bytes
        print(f"{d.name:<24}{n_keys:>6}{n_bytes:>10}  {shape}")
        if hub_pool is not None:
            hub_pools[d.name] = hub_pool
    print(f"{'total':<24}{'':>6}{total:>10}")
    for name, pool in hub_pools.items():
        print(
            f"{name}/{HUB_DIR}: config.json global_pool={pool!r}; timm local-dir reproduces logits"
        )
    print("all fixtures re-load and reproduce their logits bit for bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
