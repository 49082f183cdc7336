#!/usr/bin/env bash
# install-promtool.sh — make `promtool` available for the tests that check the Prometheus
# alert rules (promtool test rules) and the dashboard's PromQL (promtool check rules).
# It comes with Debian's `prometheus` package; only the tool is used, no server is run.
# Non-interactive and idempotent; runs as root, or through sudo when that is available.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-q -y -o Dpkg::Use-Pty=0 -o Acquire::Retries=3 -o DPkg::Lock::Timeout=600)

log() { printf '[install-promtool] %s\n' "$*"; }
die() { printf '[install-promtool] ERROR: %s\n' "$*" >&2; exit 1; }

if command -v promtool >/dev/null 2>&1; then
  log "$(promtool --version 2>&1 | head -n1) already installed; nothing to do"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
  die "installing prometheus (for promtool) needs root (or password-less sudo)"
fi
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install promtool by hand"

logfile=$(mktemp /tmp/install-promtool.XXXXXX)
trap 'rm -f "$logfile"' EXIT
apt-cache show prometheus >/dev/null 2>&1 \
  || "${as_root[@]}" apt-get update "${APT_OPTS[@]}" >"$logfile" 2>&1 \
  || { cat "$logfile" >&2; die "apt-get update failed"; }
log "installing prometheus (for promtool)"
"${as_root[@]}" apt-get install "${APT_OPTS[@]}" --no-install-recommends prometheus \
  >"$logfile" 2>&1 || { cat "$logfile" >&2; die "apt-get install prometheus failed"; }
command -v promtool >/dev/null 2>&1 || die "promtool is still missing after installing prometheus"
log "installed $(promtool --version 2>&1 | head -n1)"
