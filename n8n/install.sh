#!/usr/bin/env bash
# Install n8n 1.123.81 (and the Node 22 it needs) into a cache outside the checkout.
#
# Idempotent: when "$LEADFLOW_N8N_HOME/app/node_modules/.bin/n8n --version" already prints the pinned
# version, nothing is downloaded. A fresh install takes 3-12 minutes and ~2 GB: the sqlite3 module's
# prebuilt binary comes from GitHub (unreachable here), so node-gyp compiles it, ~6 minutes on 2 busy cores.
#
# Why this recipe (see /work/shared/ENVIRONMENT.md, "n8n"):
#   - n8n 1.123.x runs on Node 18.17..22, but its dependency isolated-vm 6.2 needs Node 22 and the
#     machine has Node 20, so Node 22 comes from the npm registry's `node` package.
#   - n8n pins `xlsx` to a tarball URL outside the registry; an npm override to 0.18.5 fixes it.
#
# Usage: n8n/install.sh            install (or reuse) and print the n8n binary path on the last line
#        n8n/install.sh --check    exit 0 if installed at the pinned version, 1 otherwise
set -euo pipefail

N8N_VERSION="${LEADFLOW_N8N_VERSION:-1.123.81}"
NODE_SPEC="node@22"
N8N_HOME="${LEADFLOW_N8N_HOME:-$HOME/.cache/leadflow/n8n}"
RUNTIME_DIR="$N8N_HOME/runtime"
APP_DIR="$N8N_HOME/app"
NODE_BIN_DIR="$RUNTIME_DIR/node_modules/.bin"
N8N_BIN="$APP_DIR/node_modules/.bin/n8n"

installed_version() {
    [[ -x "$NODE_BIN_DIR/node" && -x "$N8N_BIN" ]] || return 1
    PATH="$NODE_BIN_DIR:$PATH" N8N_USER_FOLDER="$N8N_HOME/version-check" "$N8N_BIN" --version 2>/dev/null | tail -n 1
}

is_installed() {
    [[ "$(installed_version || true)" == "$N8N_VERSION" ]]
}

if [[ "${1:-}" == "--check" ]]; then
    is_installed
    exit $?
fi

if is_installed; then
    echo "n8n $N8N_VERSION already installed in $N8N_HOME" >&2
    echo "$N8N_BIN"
    exit 0
fi

command -v npm >/dev/null || { echo "npm is required to install n8n" >&2; exit 1; }
mkdir -p "$RUNTIME_DIR" "$APP_DIR"
# Two test sessions starting at once must not run npm into the same folder: take a lock, then look again.
exec 9>"$N8N_HOME/.install.lock"
flock 9
if is_installed; then
    echo "n8n $N8N_VERSION installed in $N8N_HOME by another process" >&2
    echo "$N8N_BIN"
    exit 0
fi

if [[ ! -x "$NODE_BIN_DIR/node" ]] || [[ "$("$NODE_BIN_DIR/node" --version)" != v22.* ]]; then
    echo "installing $NODE_SPEC into $RUNTIME_DIR" >&2
    npm install --prefix "$RUNTIME_DIR" --no-audit --no-fund --loglevel=error "$NODE_SPEC" >&2
fi

cat > "$APP_DIR/package.json" <<EOF
{"private": true, "dependencies": {"n8n": "$N8N_VERSION"}, "overrides": {"xlsx": "0.18.5"}}
EOF

echo "installing n8n $N8N_VERSION into $APP_DIR (takes ~3 minutes)" >&2
(cd "$APP_DIR" && PATH="$NODE_BIN_DIR:$PATH" npm install --no-audit --no-fund --loglevel=error >&2)

if ! is_installed; then
    echo "n8n install finished but '$N8N_BIN --version' does not print $N8N_VERSION" >&2
    exit 1
fi
echo "n8n $N8N_VERSION installed in $N8N_HOME" >&2
echo "$N8N_BIN"
