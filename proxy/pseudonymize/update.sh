#!/bin/sh
# Refreshes the vendored crawler-user-agents.json from the npm registry.
# Usage: ./update.sh [version]   (default: latest)
set -eu
cd "$(dirname "$0")"
spec="crawler-user-agents@${1:-latest}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$spec" >/dev/null && tar xzf crawler-user-agents-*.tgz)
cp "$tmp/package/crawler-user-agents.json" crawler-user-agents.json
node -p "require('$tmp/package/package.json').version" > crawler-user-agents.VERSION
echo "crawler-user-agents $(cat crawler-user-agents.VERSION) vendored"
