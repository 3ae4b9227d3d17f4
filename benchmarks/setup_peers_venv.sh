#!/usr/bin/env bash
# Build the venv that benchmarks/peers.py measures the peers in, apart from the main venv.
#
#   benchmarks/setup_peers_venv.sh [VENV]      # default /work/peers-venv
#
# torch stays pinned to 2.13.0, the version of the main venv (unpinned, pip pulls a newer,
# multi-GB CUDA torch). Where the CPU build is not on a local index, add
# --extra-index-url https://download.pytorch.org/whl/cpu through PIP_EXTRA_INDEX_URL.
# torchvision 0.28.0 is the release built for torch 2.13 (0.29 wants torch >= 2.14); its wheel
# is a CUDA build whose compiled ops do not load beside the CPU torch, which
# benchmarks/_torchvision_shim.py works around for the pure-Python models. If the resolver
# insists on another torch, it is installed with --no-deps instead.
set -euo pipefail
venv="${1:-/work/peers-venv}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python3 -m venv "$venv"
pip="$venv/bin/pip"
if ! "$pip" install torch==2.13.0 torchvision==0.28.0; then
    "$pip" install torch==2.13.0 numpy pillow
    "$pip" install --no-deps torchvision==0.28.0
fi
# torch pinned again so that no peer's requirements can swap it; timm and vit-pytorch find
# the torchvision installed above.
"$pip" install torch==2.13.0 timm==1.0.31 vit-pytorch==1.26.11 transformers==5.24.0 \
    einops safetensors numpy
# --fast-paths: onnxruntime (and the exporter's onnx/onnxscript), torchao for int8 compiled;
# the versions of requirements-dev.txt.
"$pip" install torch==2.13.0 onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.32.0 torchao==0.18.0
"$pip" install -e "$repo" --no-deps
"$venv/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "peers venv ready: $venv/bin/python $repo/benchmarks/peers.py --quick"
