#!/usr/bin/env bash
# The project's whole check: lint, format, types, docs, tests (slow ones included).
# Run from the repository root with the dev requirements installed.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ruff check";           ruff check .
echo "== ruff format --check";  ruff format --check .
echo "== mypy --strict";        mypy
echo "== mkdocs build --strict"
site_dir=$(mktemp -d)
trap 'rm -rf "$site_dir"' EXIT
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$site_dir"
# CI's hypothesis budget (tests/conftest.py: 200 examples per property test); set
# HYPOTHESIS_PROFILE=vitlib for a quick run. --fail-on-skip: the dev requirements install every
# optional dependency, so a skipped test means a broken import, not a missing extra.
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
echo "== pytest (hypothesis profile: $HYPOTHESIS_PROFILE)"
pytest --fail-on-skip "$@"
