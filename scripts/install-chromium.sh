#!/usr/bin/env bash
# install-chromium.sh — make Debian's `chromium` available at /usr/bin/chromium for the
# browser tests (Playwright drives it; `playwright install` cannot download browsers here).
# Non-interactive, quiet and idempotent: does nothing when /usr/bin/chromium exists. Runs
# as root, or through sudo when that is available.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
PACKAGES=(chromium)
CHROMIUM=/usr/bin/chromium
# Wait for another apt/dpkg run (up to 10 minutes) instead of failing on its lock.
APT_OPTS=(-q -y -o Dpkg::Use-Pty=0 -o Acquire::Retries=3 -o DPkg::Lock::Timeout=600)

log() { printf '[install-chromium] %s\n' "$*"; }
die() { printf '[install-chromium] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -x $CHROMIUM ]]; then
  log "$("$CHROMIUM" --version 2>/dev/null | head -n1 || echo chromium) already installed; nothing to do"
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

logfile=$(mktemp /tmp/install-chromium.XXXXXX)
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
apt-cache show chromium >/dev/null 2>&1 || apt_update
log "installing ${PACKAGES[*]}"
if ! apt_install; then
  apt_update
  apt_install || { cat "$logfile" >&2; die "apt-get install ${PACKAGES[*]} failed"; }
fi

[[ -x $CHROMIUM ]] || die "$CHROMIUM is still missing after installing ${PACKAGES[*]}"
log "installed $("$CHROMIUM" --version 2>/dev/null | head -n1 || echo chromium)"
