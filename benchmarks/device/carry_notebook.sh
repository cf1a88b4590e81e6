#!/usr/bin/env bash
# Adds the notebook runner (papermill, ipykernel and what they import) to .carry/nbwhl for the GPU check on the lent
# GPU, which reaches no package registry; .carry/setup.sh installs them there. Run from the project root after
# ../shared/tools/make_device_carry.sh. Versions: papermill and ipykernel as requirements-dev.txt pins them.
# About 30 wheels, 4.7 MB: the machine already has requests, pyyaml, click, tqdm, pygments, psutil, attrs,
# packaging and python-dateutil, and the kernel runs without debugpy, jedi and parso, which stay behind.
set -euo pipefail
[ -d .carry/site ] || { echo "error: no .carry/site; run ../shared/tools/make_device_carry.sh first" >&2; exit 2; }
plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64"
plat="$plat --platform manylinux_2_26_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
plat="$plat --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q $plat -d "$tmp" $(grep -E '^(papermill|ipykernel)==' requirements-dev.txt | cut -d' ' -f1)
mkdir -p .carry/nbwhl
for w in asttokens comm entrypoints executing fastjsonschema ipykernel ipython- ipython_pygments jsonschema- \
         jsonschema_spec jupyter_client jupyter_core matplotlib_inline nbclient nbformat nest_asyncio papermill pexpect \
         platformdirs prompt_toolkit ptyprocess pure_eval pyzmq referencing rpds_py stack_data tenacity tornado \
         traitlets wcwidth; do
  cp "$tmp"/${w}*.whl .carry/nbwhl/
done
ls .carry/nbwhl | wc -l; du -sh .carry/nbwhl
