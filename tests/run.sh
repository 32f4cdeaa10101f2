#!/usr/bin/env bash
# Runs the whole test suite: installs the pinned chain tooling (anvil, cast, solc) and the
# TypeScript example's tooling (jose, tsx) from the
# committed npm lockfile when missing, then every unit, integration and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] || [ ! -d node_modules/solc ] || [ ! -x node_modules/.bin/tsx ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# The Standard Webhooks reference library, to check our signatures independently.
python3 -c "import standardwebhooks" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check standardwebhooks==1.1.0
# keccak256 for the merchant's invoice-id example (docs/examples/invoice_id.py).
python3 -c "import Crypto.Hash.keccak" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pycryptodome==3.23.0
# PyJWT signs the merchant's requests in docs/examples/merchant_client.py.
python3 -c "import jwt, cryptography" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check "pyjwt[crypto]==2.15.1"
# schemathesis checks the live API against its OpenAPI document.
python3 -c "import schemathesis" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check schemathesis==4.32.5
# promtool checks the alert rules and a live node's metrics; headless Chromium renders the
# status page.
missing=""
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
cargo test --workspace --locked --doc --quiet
cargo nextest run --workspace --locked --no-fail-fast
