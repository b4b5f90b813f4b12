#!/usr/bin/env bash
# Build a local Python 3.11 base image from Debian packages, for machines that cannot pull
# python:3.11-slim from Docker Hub (this project's CI). Needs root, debootstrap and docker.
#
#   deployments/base_image.sh [TAG]        # default movierec-base:bookworm
#   make image BASE_IMAGE=movierec-base:bookworm
#
# The image stands in for python:3.11-slim: Debian bookworm's Python 3.11 with pip and venv,
# the host's CA bundle (so pip and uv reach the package index through the same TLS setup as the
# host), and the two variables Debian's Python needs to install packages system-wide.
set -euo pipefail

tag="${1:-movierec-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
  bookworm "$rootfs" "$mirror"

cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
# What Debian's official images configure: apt keeps no package caches or translations in
# the layers built on this base.
cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
# ... and dpkg installs no translations, manuals or documentation (as Debian's slim images).
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
DPKG
# The host's bundle holds every CA the host trusts (a TLS-inspecting proxy's too).
install -m 644 /etc/ssl/certs/ca-certificates.crt \
  "$rootfs/usr/local/share/ca-certificates/host-ca-bundle.crt"
chroot "$rootfs" update-ca-certificates >/dev/null
chroot "$rootfs" apt-get clean
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/man/* \
  "$rootfs"/usr/share/locale/*

tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  - "$tag"
docker image ls "$tag"
