#!/bin/sh
# The compose stack's one-shot deployer (service `deployer`, image target `deployer`).
#
# Deploys the local world (tokens, feeds, real Uniswap V2/V3, the vault) on the stack's Anvil and
# writes the manifest the keeper reads, unless the manifest already in the shared volume names a
# vault that still has code on that Anvil (its chain state is kept in a volume): a restart of the
# stack keeps the same vault, a fresh Anvil gets a fresh world.
set -eu

manifest="${MANIFEST:-/shared/manifest.json}"
rpc_url="${ANVIL_RPC_URL:-http://anvil:8545}"

if [ -f "$manifest" ] && python - "$manifest" "$rpc_url" <<'EOF'
import sys

from deploy.chain import connect
from keeper.manifest import load_manifest

manifest = load_manifest(sys.argv[1])
code = connect(sys.argv[2], 10).eth.get_code(manifest.vault)
sys.exit(0 if len(code) > 0 else 1)
EOF
then
    echo "deployer: $manifest names a vault with code on $rpc_url; keeping that world"
    exit 0
fi

echo "deployer: deploying the local world on $rpc_url"
exec python -m deploy world --rpc-url "$rpc_url" --manifest "$manifest"
