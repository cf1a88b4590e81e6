#!/usr/bin/env bash
# Adds the tune extra (Optuna and the packages it imports) to .carry/site for the tune experiments on the lent GPU,
# which reaches no package registry. Run from the project root after ../shared/tools/make_device_carry.sh.
# Versions: requirements-tune.txt for Optuna; its dependencies as CI installs them today.
set -euo pipefail
[ -d .carry/site ] || { echo "error: no .carry/site; run ../shared/tools/make_device_carry.sh first" >&2; exit 2; }
plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64"
plat="$plat --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps $plat -d "$tmp" $(grep -v '^#' requirements-tune.txt) \
  alembic==1.20.1 sqlalchemy==2.1.9 colorlog==6.12.0 mako==1.4.3 markupsafe
for w in "$tmp"/*.whl; do (cd .carry/site && unzip -q -o "$w"); done
# SQLAlchemy runs as pure Python without its compiled speed-ups (9 MB), which a study's few queries never miss
find .carry/site/sqlalchemy -name '*.so' -delete
rm -rf "$tmp"
du -sh .carry/site
