#!/bin/bash
# Both images built entirely from source, every stage of their Dockerfiles
# (the playground with npm, the binaries with cargo, the guests with
# `cargo xtask guest`, the AOT artifacts), with buildah and no registry:
#   k8s/images/from-source.sh            (~15 min cold on 2 cores)
#   k8s/images/from-source.sh builders   (only the builder images)
# The Dockerfiles' builder images (rust:1.95-slim-bookworm,
# node:20-bookworm-slim) are made locally under the same names: a Debian
# bookworm tree from the mirror (mmdebstrap, with gcc and libc6-dev as in
# the official slim images) and this machine's own Rust 1.95 toolchain and
# Node.js 20 copied in. The runtime base is k8s/images/base.sh's. Build
# containers use the host's network and its CA bundle (mounted, and named
# by the builders' SSL_CERT_FILE, PIP_CERT, CARGO_HTTP_CAINFO and
# NODE_EXTRA_CA_CERTS: the registries are reached through it). Tags:
# $EXECUTOR_TAG and $GATEWAY_TAG (default: the names `cargo xtask image`
# gives the same images built from this machine's binaries). Needs root,
# mmdebstrap, buildah and podman, and CONTAINERS_CONF=k8s/images/containers.conf
# on this kind of machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${BASE:-localhost/runbox-base:bookworm}
RUST=docker.io/library/rust:1.95-slim-bookworm
NODE=docker.io/library/node:20-bookworm-slim
EXECUTOR_TAG=${EXECUTOR_TAG:-localhost/runbox/executor:0.1.0}
GATEWAY_TAG=${GATEWAY_TAG:-localhost/runbox/gateway:0.1.0}
CA=/etc/ssl/certs/ca-certificates.crt
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date -d 2026-01-01 +%s)}

exists() { podman image exists "$1"; }

# A bookworm tree with $1 (comma-separated packages), $2 copied over it
# from this machine ("host-path:image-path" pairs), imported as $3 with the
# --change options after it.
builder() {
  local packages=$1 copies=$2 tag=$3
  shift 3
  local work
  work=$(mktemp -d)
  mmdebstrap --variant=minbase --mode=root --format=directory \
    --include="$packages" bookworm "$work/rootfs" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  local pair
  for pair in $copies; do
    mkdir -p "$work/rootfs/${pair#*:}"
    cp -a "${pair%%:*}/." "$work/rootfs/${pair#*:}/"
  done
  rm -rf "$work/rootfs/var/lib/apt/lists/"*
  tar --numeric-owner -C "$work/rootfs" -c . | podman import "$@" - "$tag"
  rm -rf "$work"
}

if ! exists "$RUST"; then
  toolchain=$(readlink -f "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/1.95.0-x86_64-unknown-linux-gnu")
  [[ -x $toolchain/bin/cargo ]] || { echo "from-source: no Rust 1.95 toolchain at $toolchain" >&2; exit 1; }
  builder ca-certificates,gcc,libc6-dev,git "$toolchain:/usr/local" "$RUST" \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change "ENV SSL_CERT_FILE=$CA" --change "ENV CARGO_HTTP_CAINFO=$CA" \
    --change "ENV PIP_CERT=$CA"
fi
if ! exists "$NODE"; then
  node=$(command -v node)
  [[ $("$node" --version) == v20.* ]] || { echo "from-source: Node.js 20 is needed, found $("$node" --version)" >&2; exit 1; }
  stage=$(mktemp -d)
  install -D -m 0755 "$node" "$stage/bin/node"
  mkdir -p "$stage/lib/node_modules"
  cp -a /usr/lib/node_modules/npm "$stage/lib/node_modules/"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$stage/bin/npm"
  builder ca-certificates "$stage:/usr/local" "$NODE" \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change "ENV NODE_EXTRA_CA_CERTS=$CA"
  rm -rf "$stage"
fi
exists "$BASE" || TAG=$BASE bash k8s/images/base.sh
[[ ${1:-} == builders ]] && exit 0   # `from-source.sh builders`: only the images above

# The whole repository is the context; .dockerignore keeps the build
# outputs out.
for image in executor gateway; do
  tag=EXECUTOR_TAG
  [[ $image == gateway ]] && tag=GATEWAY_TAG
  start=$SECONDS
  buildah bud --pull-never --layers=false --network host \
    --volume "$CA:$CA:ro" --build-arg "BASE=$BASE" \
    -f "$image/Dockerfile" -t "${!tag}" .
  size=$(podman image inspect --format '{{.Size}}' "${!tag}")
  echo "from-source: built ${!tag} in $((SECONDS - start)) s: $((size / 1000000)) MB" >&2
done
