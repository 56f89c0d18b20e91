#!/usr/bin/env bash
# Installs everything the tests and the demo need, idempotently. Safe to run again.
# Debian packages (browser, media tools, redis, NAT/netns tools), the wasm target,
# wasm-bindgen-cli at the exact version of the crate, cargo-fuzz, and the web/ npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

APT_PKGS=(chromium ffmpeg redis-server coturn iproute2 nftables iptables nasm fonts-dejavu-core)
WASM_BINDGEN_VERSION=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p' | head -n1)

need_apt=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
  rustup target add wasm32-unknown-unknown
fi

if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  echo "install-deps: cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: its lockfile names crates this registry mirror lacks.
  cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "install-deps: cargo install cargo-fuzz"
  cargo install -q cargo-fuzz
fi

# The machine's Node.js (playwright-core needs >= 20; Debian 12's own nodejs is 18, so it is not
# a fallback): fail with the reason rather than half-install.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-deps: node and npm are required (Node.js >= 20) and not on PATH" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "install-deps: Node.js $(node --version) is too old; web/ (playwright-core) needs >= 20" >&2
  exit 1
fi

if [ -f web/package.json ]; then
  if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    echo "install-deps: npm ci in web/"
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
echo "install-deps: ok ($((SECONDS - started)) s)"
