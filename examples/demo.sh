#!/usr/bin/env bash
# The talk's first demo: mgmt creates f1..f3, keeps f4 away, and repairs drift at once.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./target/release/mgmt
# The example manages /tmp/mgmt; the demo runs a copy that manages a fresh directory instead,
# so it never touches (or deletes) anything that was there before.
work=$(mktemp -d)
dir=$work/mgmt
sed "s#/tmp/mgmt#$dir#g" examples/yaml/file1.yaml > "$work/graph.yaml"
$bin run --tmp-prefix yaml "$work/graph.yaml" &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
show() { printf '\n$ %s\n' "$*"; eval "$*"; }
wait_for() { for _ in $(seq 100); do eval "$1" && return 0; sleep 0.02; done; return 1; }
wait_for '[ -f $dir/f3 ]'
show "ls $dir; cat $dir/f1"
show "echo 'drift' > $dir/f1; sleep 0.05; cat $dir/f1"
show "rm $dir/f2; sleep 0.05; ls $dir"
show "echo 'sneaky' > $dir/f4; sleep 0.05; ls $dir"
printf '\nStopping (Ctrl-C) ...\n'
