#!/usr/bin/env bash
# Regenerates src/prompts/files.rs from the *.jinja files of this directory.
set -euo pipefail
cd "$(dirname "$0")/.."
{
echo '//! The built-in prompt templates, compiled into the filter (`filters/router/prompts/`).'
echo '//! Regenerate the list with `filters/router/prompts/gen_files.sh` after adding a file;'
echo '//! a unit test fails when this table and the directory disagree.'
echo
echo 'pub const MANIFEST: &str = include_str!("../../prompts/manifest.json");'
echo
echo '/// (template name, source): the name is the path under `prompts/` without `.jinja`.'
echo 'pub const TEMPLATES: &[(&str, &str)] = &['
(cd prompts && find . -name '*.jinja' | sed 's|^\./||' | LC_ALL=C sort) | while read -r f; do echo "    (\"${f%.jinja}\", include_str!(\"../../prompts/$f\")),"; done
echo '];'
} > src/prompts/files.rs
