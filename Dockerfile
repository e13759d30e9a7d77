# syntax=docker/dockerfile:1
#
# Images of the keeper stack (docker-compose.yml builds both targets):
#   keeper    (final stage, the default): the daemon. python:3.11-slim, the venv, a non-root user,
#             ENTRYPOINT ["keeper"] CMD ["run"], a HEALTHCHECK on /healthz. It needs only the
#             manifest at run time; the signing key comes from a Docker secret
#             (KEEPER_PRIVATE_KEY_FILE) or the environment, never from the image.
#   deployer  the local chain for development: the npm-installed Anvil, the real Uniswap
#             artifacts and the compiled contracts, to run `anvil` and `python -m deploy world`.
#
#   docker build -t keeper .                       # the keeper image
#   docker build --target deployer -t keeper-deployer .
#
# What stays out of the run-time images: node, npm, node_modules, forge, cast and solcjs live in
# the `toolchain` stage only; pip works in `build`. The keeper image gets the venv and nothing else
# (about 100 MB over the base; no compiler: every dependency installs as a wheel). The deployer
# image keeps only what is read or run at run time: the `anvil` binary (43 MB; the `anvil` service
# runs it), the Uniswap V2/V3 build artifacts (13 MB; `python -m deploy world` deploys their
# bytecode) and contracts/out (the vault and world contracts' ABI and bytecode); not the rest of
# node_modules (package sources, forge, cast, solcjs: about 180 MB).
#
# Both base images are build arguments, so a registry mirror or a local image can stand in for
# them (tests/container builds with Debian-made ones: no registry is reachable there).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# ---------------------------------------------------------------------------- toolchain
# Foundry (anvil, forge) and the Uniswap artifacts from npm, pinned by package-lock.json, as
# `make install` does; then the contracts compiled by forge through contracts/bin/solc (solcjs).
# The lock holds Foundry's linux-amd64 binaries only: build this target for linux/amd64. They need
# node >= 20: on an older node npm skips them without an error (optional dependencies whose
# `engines` do not match), and the `cp` below is what fails.
FROM ${NODE_IMAGE} AS toolchain
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund --no-save --loglevel=error \
 && cp node_modules/@foundry-rs/anvil-linux-*/bin/anvil /usr/local/bin/anvil
# Only what the deployer deploys: the sources, not the tests (nothing deploys them; leaving them out
# keeps the slow solcjs compile short and this layer cached when only tests change).
COPY contracts/foundry.toml contracts/
COPY contracts/bin/ contracts/bin/
COPY contracts/src/ contracts/src/
RUN cd contracts && ../node_modules/@foundry-rs/forge-linux-*/bin/forge build --quiet

# ---------------------------------------------------------------------------- build
# The pinned runtime dependencies first (a layer that changes only with pyproject.toml), then
# the keeper itself, into /opt/venv.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > requirements.txt \
 && /opt/venv/bin/pip install -r requirements.txt
COPY README.md ./
COPY keeper/ keeper/
COPY deploy/ deploy/
RUN /opt/venv/bin/pip install --no-deps . && /opt/venv/bin/keeper --version

# ---------------------------------------------------------------------------- deployer
# Anvil plus what `python -m deploy world` reads: deploy/artifacts.py finds node_modules/@uniswap
# and contracts/out next to the source tree, hence the sources under /app on PYTHONPATH.
FROM ${PYTHON_IMAGE} AS deployer
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 keeper \
 && useradd --system --uid 10001 --gid keeper --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin keeper \
 && install -d -o keeper -g keeper -m 0755 /shared /anvil
COPY --from=build /opt/venv /opt/venv
COPY --from=toolchain /usr/local/bin/anvil /usr/local/bin/anvil
WORKDIR /app
COPY --from=toolchain /src/node_modules/@uniswap/v2-core/build/ node_modules/@uniswap/v2-core/build/
COPY --from=toolchain /src/node_modules/@uniswap/v2-periphery/build/ node_modules/@uniswap/v2-periphery/build/
COPY --from=toolchain /src/node_modules/@uniswap/v3-core/artifacts/ node_modules/@uniswap/v3-core/artifacts/
COPY --from=toolchain /src/node_modules/@uniswap/v3-periphery/artifacts/ node_modules/@uniswap/v3-periphery/artifacts/
COPY --from=toolchain /src/contracts/out/ contracts/out/
COPY keeper/ keeper/
COPY deploy/ deploy/
USER 10001:10001
EXPOSE 8545
CMD ["python", "-m", "deploy", "--help"]

# ---------------------------------------------------------------------------- keeper
FROM ${PYTHON_IMAGE} AS keeper
LABEL org.opencontainers.image.title="keeper" \
      org.opencontainers.image.description="On-chain portfolio rebalancing keeper"
# Only process settings here (journal, listener, logs): a vault's manifest is named by whoever
# runs the image (KEEPER_MANIFEST, e.g. /config/manifest.json) or by a fleet file (KEEPER_FLEET),
# which refuses any per-vault KEEPER_* variable in the environment.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KEEPER_JOURNAL_PATH=/data/journal.sqlite3 \
    KEEPER_METRICS_HOST=0.0.0.0 \
    KEEPER_METRICS_PORT=9108 \
    KEEPER_LOG_FORMAT=json
RUN groupadd --system --gid 10001 keeper \
 && useradd --system --uid 10001 --gid keeper --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin keeper \
 && install -d -o keeper -g keeper -m 0750 /data
COPY --from=build /opt/venv /opt/venv
# Numeric, so orchestrators can verify runAsNonRoot.
USER 10001:10001
WORKDIR /data
EXPOSE 9108
# /healthz answers 503 once no tick has completed within KEEPER_HEALTH_MAX_AGE_S; urlopen raises
# on it, so the probe exits 1. No curl in the image: the keeper's own Python does the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KEEPER_METRICS_PORT', '9108'), timeout=4)"]
ENTRYPOINT ["keeper"]
CMD ["run"]
