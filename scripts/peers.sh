#!/usr/bin/env bash
# Installs the pinned real-server peers the integration tests start:
#   tests/peers/.venv         official Python SDK (mcp==2.3.0) + uvicorn
#   tests/peers/node_modules  official TypeScript SDK (@modelcontextprotocol/sdk 1.32.2) + express,
#                             and SDK v2 (@modelcontextprotocol/server 2.4.0 + @modelcontextprotocol/node 2.1.2)
#   redis-server              Debian's package, for the shared token store tests
# Idempotent: a peer already at its pinned version is left alone.
set -euo pipefail
cd "$(dirname "$0")/../tests/peers"

PY_PINS=(mcp==2.3.0 uvicorn==0.54.0)
python=${PYTHON:-python3}
if ! .venv/bin/python -c 'import importlib.metadata as m; assert m.version("mcp") == "2.3.0"' 2>/dev/null; then
  rm -rf .venv
  "$python" -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "${PY_PINS[@]}"
fi
echo "python peer: $(.venv/bin/python --version), mcp $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("mcp"))')"

if ! node -e '
  const v = (p) => require("./node_modules/" + p + "/package.json").version;
  if (v("@modelcontextprotocol/sdk") !== "1.32.2" || v("@modelcontextprotocol/server") !== "2.4.0"
      || v("@modelcontextprotocol/node") !== "2.1.2") process.exit(1)' 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "typescript peers: node $(node --version), sdk $(node -p 'require("./node_modules/@modelcontextprotocol/sdk/package.json").version'), server (v2) $(node -p 'require("./node_modules/@modelcontextprotocol/server/package.json").version')"

# Redis for the shared token store (RedisTokenStore): Debian's package. The
# tests start their own servers on a unix socket in a directory of their own.
if ! command -v redis-server >/dev/null 2>&1; then
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo -n)
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1 \
    || { "${as_root[@]}" apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends redis-server >/dev/null; }
fi
echo "redis: $(redis-server --version | cut -d' ' -f3)"
