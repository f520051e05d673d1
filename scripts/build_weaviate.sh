#!/usr/bin/env bash
# Put the Weaviate server where weaviate-client's embedded mode looks for it:
#   <binary dir>/weaviate-v<version>-<sha256 of "v<version>">
# Reuse a cached binary; else let weaviate-client download the release where GitHub is reachable; else build
# it from source with `go install` (Go module proxy). GOMODCACHE, GOCACHE and the binary live outside the
# clone, so CI on the same machine builds it once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSION=$($PY -c 'from bot.config import Settings; print(Settings().weaviate_version)')
BINARY_DIR=$($PY -c 'from bot.config import Settings; print(Settings().weaviate_binary_dir)')
TARGET=$($PY -c "from pathlib import Path; from store.weaviate_conn import embedded_binary_path as p; print(p(Path('$BINARY_DIR'), '$VERSION'))")
mkdir -p "$BINARY_DIR"

if [ -x "$TARGET" ]; then
  echo "weaviate v$VERSION: cached at $TARGET"
  exit 0
fi

release="https://github.com/weaviate/weaviate/releases/download/v$VERSION/weaviate-v$VERSION-linux-amd64.tar.gz"
if curl -fsIL --max-time 8 "$release" >/dev/null 2>&1; then
  echo "weaviate v$VERSION: downloading the release with weaviate-client"
  $PY - <<PYEOF
from weaviate.embedded import EmbeddedOptions, EmbeddedV4
db = EmbeddedV4(EmbeddedOptions(version="$VERSION", binary_path="$BINARY_DIR"))
db.ensure_paths_exist()
db.ensure_weaviate_binary_exists()
PYEOF
  [ -x "$TARGET" ] && exit 0
fi

command -v go >/dev/null || { echo "Go is needed to build Weaviate (no release download here)" >&2; exit 1; }
echo "weaviate v$VERSION: building from source with go install (first time only; several minutes)"
BUILD_BIN="$BINARY_DIR/.gobin-v$VERSION"
# A module that needs a newer Go than the machine's is fetched as a toolchain from the module proxy.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
CGO_ENABLED=1 GOBIN="$BUILD_BIN" go install "github.com/weaviate/weaviate/cmd/weaviate-server@v$VERSION"
install -m 0755 "$BUILD_BIN/weaviate-server" "$TARGET"
rm -rf "$BUILD_BIN"
echo "weaviate v$VERSION: built and cached at $TARGET"
