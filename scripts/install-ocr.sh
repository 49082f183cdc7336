#!/usr/bin/env bash
# install-ocr.sh — make the `tesseract` OCR engine (with its English data) available,
# from Debian's own packages (tesseract-ocr, tesseract-ocr-eng). Non-interactive and
# idempotent: does nothing when tesseract is on PATH and knows English. Runs as root, or
# through sudo when that is available.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
PACKAGES=(tesseract-ocr tesseract-ocr-eng)
# Wait for another apt/dpkg run (up to 10 minutes) instead of failing on its lock.
APT_OPTS=(-q -y -o Dpkg::Use-Pty=0 -o Acquire::Retries=3 -o DPkg::Lock::Timeout=600)

log() { printf '[install-ocr] %s\n' "$*"; }
die() { printf '[install-ocr] ERROR: %s\n' "$*" >&2; exit 1; }

has_english() {
  command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>/dev/null | grep -qx eng
}

if has_english; then
  log "$(tesseract --version 2>&1 | head -n1) with English already installed; nothing to do"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
  die "installing ${PACKAGES[*]} needs root (or password-less sudo)"
fi
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${PACKAGES[*]} by hand"

logfile=$(mktemp /tmp/install-ocr.XXXXXX)
trap 'rm -f "$logfile"' EXIT

apt_update() {
  log "apt-get update"
  "${as_root[@]}" apt-get update "${APT_OPTS[@]}" >"$logfile" 2>&1 \
    || { cat "$logfile" >&2; die "apt-get update failed"; }
}

apt_install() {
  "${as_root[@]}" apt-get install "${APT_OPTS[@]}" --no-install-recommends "${PACKAGES[@]}" \
    >"$logfile" 2>&1
}

# A fresh machine may have no package lists yet; stale lists may point at removed files.
apt-cache show tesseract-ocr >/dev/null 2>&1 || apt_update
log "installing ${PACKAGES[*]}"
if ! apt_install; then
  apt_update
  apt_install || { cat "$logfile" >&2; die "apt-get install ${PACKAGES[*]} failed"; }
fi

has_english || die "tesseract is still missing, or lacks English, after installing ${PACKAGES[*]}"
log "installed $(tesseract --version 2>&1 | head -n1) with English"
