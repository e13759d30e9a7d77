#!/usr/bin/env bash
# Makes this machine able to build and run the project's images with podman, for tests/container
# (`make test-container`). Host settings only: nothing here goes into an image, the Dockerfile or
# the compose files, which stay plain Docker/Compose.
#
# - Debian's podman, runc, mmdebstrap, the CNI plugins for compose's bridge network and the CNI
#   dnsname plugin (without it service names do not resolve between containers) (no Docker
#   engine here; mmdebstrap makes the base images from Debian packages, since no image registry
#   is reachable). podman-compose comes from PyPI in the dev extra: Debian's 1.0.3 cannot read
#   docker-compose.yml (the `env_file` long syntax).
# - /etc/containers/containers.conf: runc (crun refuses this machine's cgroup layout) and
#   container ulimits at or below the sandbox's own (raising RLIMIT_NPROC is refused, so every
#   container start fails with podman's default of raising it).
set -euo pipefail

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# iptables: the CNI portmap plugin publishes ports with it.
packages=(podman runc mmdebstrap containernetworking-plugins golang-github-containernetworking-plugin-dnsname iptables)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]} (apt-get)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

conf=/etc/containers/containers.conf
wanted='# Written by keeper tests/container/setup-host.sh: settings this machine needs for podman.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"'
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$wanted" ]; then
  if [ -f "$conf" ] && ! grep -q "keeper tests/container/setup-host.sh" "$conf"; then
    $SUDO cp "$conf" "$conf.before-keeper"
    echo "setup-host: kept the previous $conf as $conf.before-keeper"
  fi
  printf '%s\n' "$wanted" | $SUDO tee "$conf" >/dev/null
  echo "setup-host: wrote $conf"
fi
podman --version
