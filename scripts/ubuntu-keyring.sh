#!/usr/bin/env bash
# ubuntu-keyring.sh <dir> [mirror]
# Fetches Ubuntu's archive keyring from its ubuntu-keyring package (SHA-256 pinned here: the one home of the
# pin), unpacks it under <dir> and prints the keyring's path. Used by userland.sh (debootstrap of Ubuntu) and
# kernel-matrix/run-in-kernel.sh (apt-get download of Ubuntu's kernel): a Debian host trusts no Ubuntu key.
set -euo pipefail
DIR=${1:?usage: ubuntu-keyring.sh <dir> [mirror]}
MIRROR=${2:-${NFTN_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}}
DEB=pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb
SHA256=36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8
KR=$DIR/x/usr/share/keyrings/ubuntu-archive-keyring.gpg
if [[ ! -s $KR ]]; then
  rm -rf -- "$DIR" && mkdir -p "$DIR"
  curl -fsS -m 120 -o "$DIR/k.deb" "$MIRROR/$DEB" || { echo "cannot fetch $MIRROR/$DEB" >&2; exit 125; }
  echo "$SHA256  $DIR/k.deb" | sha256sum -c --quiet - || { echo "ubuntu-keyring: checksum mismatch" >&2; exit 125; }
  dpkg-deb -x "$DIR/k.deb" "$DIR/x"
fi
echo "$KR"
