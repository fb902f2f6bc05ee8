#!/usr/bin/env bash
# Runs the code blocks of README.md and docs/*.md (compiled into
# docs_snippets) and checks that they print what their `// prints:` lines say.
set -uo pipefail
dir=$(dirname "$0")
actual=$(mktemp)
if ! "$dir/docs_snippets" > "$actual"; then
  echo "docs_test: a snippet failed (exit status above)" >&2
  exit 1
fi
if ! diff -u "$dir/docs_snippets_expected.txt" "$actual"; then
  echo "docs_test: the snippets' output differs from their '// prints:' lines" >&2
  exit 1
fi
echo "docs_test: $(wc -l < "$dir/docs_snippets_expected.txt") expected lines printed"
