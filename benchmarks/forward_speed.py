"""Forward-pass throughput of vitlib against Hugging Face transformers and the chapter's ViT.

All three run the same architecture with the same weights (loaded through vitlib's converters)
in the same process, so the ratios are fair; absolute numbers drift 5-10% between runs here.

    python benchmarks/forward_speed.py                     # ViT-S/16, batch 8, fp32 and bf16
    python benchmarks/forward_speed.py --preset ViT-B/16 --batch-size 16 --repeats 5

Needs ``transformers`` (in the dev requirements). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn

import vitlib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import learnpytorch_reference as chapter  # the chapter's code, for reference


def _time(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peers(model: vitlib.ViT) -> dict[str, nn.Module]:
    cfg = model.config
    peers: dict[str, nn.Module] = {"vitlib": model}
    reference = chapter.ViT(
        img_size=cfg.image_hw[0],
        patch_size=cfg.patch_hw[0],
        num_transformer_layers=cfg.num_transformer_layers,
        embedding_dim=cfg.embedding_dim,
        mlp_size=cfg.mlp_size,
        num_heads=cfg.num_heads,
        num_classes=cfg.num_classes,
    )
    peers["learnpytorch chapter"] = reference
    try:
        import transformers
    except ImportError:
        return peers
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vitlib.save_pretrained(model, Path(folder) / "hf", format="huggingface")
        hf = transformers.ViTForImageClassification.from_pretrained(
            Path(folder) / "hf", attn_implementation="sdpa"
        )
    peers["HF transformers (sdpa)"] = _Logits(hf)
    return peers


class _Logits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        out: Tensor = self.model(pixel_values=images).logits
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="ViT-S/16")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = vitlib.create_model(args.preset, mlp_dropout=0.0, embedding_dropout=0.0).eval()
    peers = _peers(model)
    # The chapter's layer norms use eps 1e-5: copy the weights, compare speed only.
    peers["learnpytorch chapter"].load_state_dict(_to_chapter(model.state_dict()))
    images = torch.randn(args.batch_size, 3, *model.config.image_hw)
    expected = model(images)
    print(
        f"{args.preset}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, median of {args.repeats}"
    )
    print("| implementation | precision | images/s | ratio to vitlib | max logit diff |")
    print("|---|---|---:|---:|---:|")
    for precision, context in (("fp32", nullcontext), ("bf16 autocast", _bf16)):
        baseline = None
        for name, peer in peers.items():
            peer.eval()
            with torch.inference_mode(), context():
                seconds = _time(lambda peer=peer: peer(images), args.repeats)
                diff = (peer(images).float() - expected).abs().max().item()
            throughput = args.batch_size / seconds
            baseline = baseline or throughput
            print(
                f"| {name} | {precision} | {throughput:.1f} | {throughput / baseline:.2f} "
                f"| {diff:.1e} |"
            )
    return 0


def _bf16() -> AbstractContextManager[object]:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _to_chapter(state: dict[str, Tensor]) -> dict[str, Tensor]:
    renames = {
        ".msa_block.qkv.": ".msa_block.multihead_attn.in_proj_",
        ".msa_block.out_proj.": ".msa_block.multihead_attn.out_proj.",
        ".mlp_block.fc1.": ".mlp_block.mlp.0.",
        ".mlp_block.fc2.": ".mlp_block.mlp.3.",
    }
    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        for old, new in renames.items():
            key = key.replace(old, new)
        key = {
            "norm.weight": "classifier.0.weight",
            "norm.bias": "classifier.0.bias",
            "head.weight": "classifier.1.weight",
            "head.bias": "classifier.1.bias",
        }.get(key, key)
        out[key] = tensor
    return out


if __name__ == "__main__":
    sys.exit(main())
