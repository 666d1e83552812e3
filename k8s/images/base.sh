#!/bin/bash
# The runtime base of both images, made locally from the Debian mirror
# (no container registry is needed): glibc, libgcc, the CA bundle and the
# nonroot user (uid/gid 65532), no shell, no package manager, as
# gcr.io/distroless/cc-debian12:nonroot. Imported as $TAG
# (localhost/runbox-base:bookworm); `cargo xtask image` runs this when the
# image is missing. Needs root, mmdebstrap and podman.
set -euo pipefail
TAG=${TAG:-localhost/runbox-base:bookworm}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date -d 2026-01-01 +%s)}
# extract: unpack the packages (and apt's dependency closure: openssl and
# debconf come with ca-certificates), run no maintainer scripts, no hooks
# but setup/extract ones.
mmdebstrap --variant=extract --mode=root --format=directory \
  --include=libc6,libgcc-s1,ca-certificates \
  bookworm "$root" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"
cd "$root"
# What update-ca-certificates (not run in extract mode) would have written.
cat usr/share/ca-certificates/*/*.crt > etc/ssl/certs/ca-certificates.crt
# Drop everything that is not libc, libgcc or the CA bundle.
rm -rf usr/bin usr/sbin usr/share/doc usr/share/man usr/share/info usr/share/lintian \
       usr/share/locale usr/share/bash-completion usr/share/debconf usr/share/perl5 \
       usr/share/pixmaps usr/share/ca-certificates usr/lib/ssl \
       usr/lib/x86_64-linux-gnu/libssl.so.3 usr/lib/x86_64-linux-gnu/libcrypto.so.3 \
       usr/lib/x86_64-linux-gnu/engines-3 usr/lib/x86_64-linux-gnu/ossl-modules \
       usr/lib/x86_64-linux-gnu/gconv usr/libexec \
       etc/apt etc/debconf.conf etc/ssl/openssl.cnf etc/ssl/private etc/ca-certificates* \
       etc/dpkg var/lib/apt var/lib/dpkg var/cache var/log dev
mkdir -p etc/ssl/certs home/nonroot root tmp var/tmp
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > etc/passwd
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > etc/group
printf 'hosts: files dns\n' > etc/nsswitch.conf
: > etc/hostname; : > etc/resolv.conf
chown 65532:65532 home/nonroot; chmod 700 root; chmod 1777 tmp var/tmp
find . -xdev -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
du -sh . >&2
tar --sort=name --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" -C "$root" -c . > "$work/rootfs.tar"
podman import \
  --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  "$work/rootfs.tar" "$TAG"

