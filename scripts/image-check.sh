#!/usr/bin/env bash
# Build the Docker image (Dockerfile) and play the demo in it against a Tansu container:
#   bash scripts/image-check.sh
# It checks what a user of the image gets: the build compiles the hot path (mypyc) and installs it on
# a base without a compiler, the image says `compiled`, and `stream-app demo` inside it (processor,
# dispatcher, webhook receiver and gateway simulator against a real broker) ends every scenario as
# the seed pages say. Exit 0 when all of that holds, 1 when it does not, 2 when it cannot run here.
#
# Needs a running Docker engine and the Tansu image that .ci/run builds (TANSU_IMAGE, default
# stream-app/tansu:ci). The base is python:3.11-slim when it is present locally; with no registry to
# pull it from (CI here), a stand-in is made once with debootstrap: Debian bookworm with its Python
# 3.11, its headers and pip, i.e. the same distribution and CPython minor version as python:3.11-slim
# (which keeps CPython's headers too: the build stage compiles against them).
# PYTHON_IMAGE picks another base.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "image-check: $*"; }
tansu=${TANSU_IMAGE:-stream-app/tansu:ci}
image=stream-app:check
standin=stream-app/python-standin:3.11
logs="${TMPDIR:-/tmp}/stream-app-image-check"
mkdir -p "$logs"
broker=""

cleanup() {
  [ -z "$broker" ] || docker rm -f "$broker" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if ! timeout 10 docker info >/dev/null 2>&1; then
  say "no Docker engine answers here: not checked"
  exit 2
fi
if ! docker image inspect "$tansu" >/dev/null 2>&1; then
  say "no $tansu image (.ci/run builds it): not checked"
  exit 2
fi

make_standin() {
  # Debian's python3 is 3.11 on bookworm; the official image's `python` and `pip` names, and pip
  # allowed to install into the system (the official image has no PEP 668 marker either).
  local root
  if [ "$(id -u)" != 0 ]; then
    say "making a stand-in base needs root (debootstrap)"
    return 1
  fi
  command -v debootstrap >/dev/null 2>&1 || apt-get install -y -q debootstrap >"$logs/apt.log" 2>&1 </dev/null || return 1
  root=$(mktemp -d)
  say "making the stand-in base $standin with debootstrap (about a minute; log: $logs/debootstrap.log)"
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,python3-dev bookworm "$root" \
    http://deb.debian.org/debian >"$logs/debootstrap.log" 2>&1 || { rm -rf "$root"; return 1; }
  ln -sf python3 "$root/usr/bin/python"
  ln -sf pip3 "$root/usr/bin/pip"
  rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  # The image's pip reaches PyPI through whatever this machine's network does (here: a TLS proxy
  # whose CA only this machine's trust store holds), so the stand-in trusts what the machine trusts.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  tar -C "$root" -c . | docker import --change 'CMD ["python3"]' - "$standin" >/dev/null
  local rc=$?
  rm -rf "$root"
  return "$rc"
}

base=${PYTHON_IMAGE:-}
if [ -z "$base" ]; then
  if docker image inspect python:3.11-slim >/dev/null 2>&1; then
    base=python:3.11-slim
  elif docker image inspect "$standin" >/dev/null 2>&1 || make_standin; then
    base=$standin
  else
    say "no python:3.11-slim here and no stand-in could be made (log: $logs): not checked"
    exit 2
  fi
fi

say "building $image on $base (log: $logs/build.log)"
# The classic builder: buildx is not packaged with Debian's docker.io, and the build needs nothing
# BuildKit adds.
if ! DOCKER_BUILDKIT=0 docker build --build-arg "PYTHON_IMAGE=$base" -t "$image" . >"$logs/build.log" 2>&1; then
  say "the image did not build; last lines of $logs/build.log:"
  tail -n 20 "$logs/build.log" | sed 's/^/  /'
  exit 1
fi

hot_path=$(docker run --rm --entrypoint python "$image" -c 'from stream_app.compiled import mode; print(mode())')
if [ "$hot_path" != compiled ]; then
  say "the image's hot path is '$hot_path', not compiled"
  exit 1
fi
say "the image's hot path is compiled"

# The broker and the demo share the host's network, so the broker's advertised address is one the
# demo reaches as is. A free port, asked of the kernel.
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
broker="stream-app-image-check-$port"
docker run -d --name "$broker" --network host "$tansu" broker \
  --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" >/dev/null
if ! .venv/bin/python -c "import sys; from stream_app.broker import wait_ready; sys.exit(not wait_ready('127.0.0.1', $port, 30))"; then
  say "the Tansu container did not answer on 127.0.0.1:$port"
  exit 1
fi
say "playing the demo in the image (log: $logs/demo.log)"
if ! docker run --rm --network host "$image" demo --bootstrap-servers "127.0.0.1:$port" --no-outage \
  >"$logs/demo.log" 2>&1; then
  say "the demo in the image failed; last lines of $logs/demo.log:"
  tail -n 20 "$logs/demo.log" | sed 's/^/  /'
  exit 1
fi
tail -n 1 "$logs/demo.log" | sed 's/^/  /'
say "ok"
