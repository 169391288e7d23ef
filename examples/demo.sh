#!/usr/bin/env bash
# The talk's first demo: mgmt creates f1..f3, keeps f4 away, and repairs drift at once.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./target/release/mgmt
dir=/tmp/mgmt
rm -rf "$dir"
$bin run --tmp-prefix yaml examples/yaml/file1.yaml &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
show() { printf '\n$ %s\n' "$*"; eval "$*"; }
wait_for() { for _ in $(seq 100); do eval "$1" && return 0; sleep 0.02; done; return 1; }
wait_for '[ -f $dir/f3 ]'
show "ls $dir; cat $dir/f1"
show "echo 'drift' > $dir/f1; sleep 0.05; cat $dir/f1"
show "rm $dir/f2; sleep 0.05; ls $dir"
show "echo 'sneaky' > $dir/f4; sleep 0.05; ls $dir"
printf '\nStopping (Ctrl-C) ...\n'
