#!/usr/bin/env bash
# install-pgvector.sh — make the `vector` extension available to the local
# PostgreSQL server (Debian 12 / bookworm, run as root, non-interactive).
#
# Debian 12 ships no pgvector package for PostgreSQL 15, so we build pgvector
# from Debian 13 (trixie)'s *source* package against the installed server:
#   1. fast path: if `vector` is already available, say so and exit 0;
#   2. add a temporary trixie deb-src entry (same mirror as the existing
#      bookworm sources) plus an apt pin at -1 for trixie;
#   3. apt-get update; install postgresql-server-dev-<major>, build-essential,
#      dpkg-dev (bookworm packages only);
#   4. apt-get source pgvector into a temp dir; make && make install with
#      PG_CONFIG=/usr/lib/postgresql/<major>/bin/pg_config;
#   5. verify with CREATE EXTENSION + a distance query in the `test` database
#      (the extension is dropped again only if this script created it — the
#      app's migrations create it themselves).
#
# Decision on the trixie entry: it is REMOVED again on exit (trap), together
# with its pin file and the fetched trixie Sources index. It is only needed
# for the one `apt-get source` call; keeping it would make every later
# `apt-get update` on the machine download trixie's ~10 MB Sources index and
# would leave a foreign-release entry that other tooling (`apt-get source`,
# `apt-get build-dep`) could silently pick up. While it exists it is pinned
# at -1, and it is deb-src only, so no binary package can ever come from
# trixie; the build deps above are always bookworm's.
#
# Environment overrides: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres),
# PGDATABASE (test), PG_MAJOR (detected), PGVECTOR_OPTFLAGS (see below).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}"
export PGUSER="${PGUSER:-postgres}" PGDATABASE="${PGDATABASE:-test}"

SRC_LIST=/etc/apt/sources.list.d/skr-trixie-src.sources
PIN_FILE=/etc/apt/preferences.d/skr-trixie-src.pref
APT_OPTS=(-q -y -o Dpkg::Use-Pty=0 -o Acquire::Retries=3)

log()  { printf '[install-pgvector] %s\n' "$*"; }
die()  { printf '[install-pgvector] ERROR: %s\n' "$*" >&2; exit 1; }
psql_q() { psql -X -v ON_ERROR_STOP=1 -Atq "$@"; }

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and writes to the PostgreSQL tree)"

# --- which PostgreSQL major version? ----------------------------------------
# Prefer the running server (authoritative), then installed server binaries,
# then pg_config. Note /usr/bin/pg_config is a postgresql-common wrapper that
# may fall back to libpq-dev's pg_config, whose sharedir is not the server's.
server_up=0
if command -v psql >/dev/null 2>&1 && psql_q -c 'SELECT 1' >/dev/null 2>&1; then
  server_up=1
fi
if [[ -z ${PG_MAJOR:-} && $server_up -eq 1 ]]; then
  PG_MAJOR=$(( $(psql_q -c 'SHOW server_version_num') / 10000 ))
fi
if [[ -z ${PG_MAJOR:-} ]]; then
  PG_MAJOR=$(ls -v /usr/lib/postgresql/ 2>/dev/null | grep -E '^[0-9]+$' | tail -n1 || true)
fi
if [[ -z ${PG_MAJOR:-} ]] && command -v pg_config >/dev/null 2>&1; then
  PG_MAJOR=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
fi
[[ -n ${PG_MAJOR:-} ]] || die "cannot find an installed PostgreSQL server"
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config

# --- fast path: already available? -----------------------------------------
if [[ $server_up -eq 1 ]]; then
  ver=$(psql_q -c "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
  if [[ -n $ver ]]; then
    log "vector $ver already available to PostgreSQL $PG_MAJOR at $PGHOST:$PGPORT; nothing to do"
    exit 0
  fi
elif [[ -x $PG_CONFIG && -f "$("$PG_CONFIG" --sharedir)/extension/vector.control" ]]; then
  log "vector already installed ($("$PG_CONFIG" --sharedir)/extension/vector.control); server not reachable, not verified"
  exit 0
fi
log "vector not available to PostgreSQL $PG_MAJOR; building pgvector from Debian trixie's source package"

# --- temporary state, always cleaned up -------------------------------------
WORKDIR=$(mktemp -d /tmp/pgvector-build.XXXXXX)
cleanup() {
  rm -rf "$WORKDIR"
  if [[ -e $SRC_LIST || -e $PIN_FILE ]]; then
    rm -f "$SRC_LIST" "$PIN_FILE"
    # drop the fetched trixie source indexes too (a later apt-get update would
    # do it anyway); leaves apt exactly as it was before the script ran
    rm -f /var/lib/apt/lists/*_dists_trixie_* 2>/dev/null || true
    log "removed temporary trixie deb-src entry and pin"
  fi
}
trap cleanup EXIT

# --- find the Debian mirror the machine already uses ------------------------
# Handles deb822 (*.sources) and one-line (sources.list, *.list) formats; picks
# the URI serving the main suite (e.g. bookworm, not bookworm-security).
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
mirror=$(
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -f $f && $f != "$SRC_LIST" ]] || continue
      # emit "URI SUITE..." per stanza
      awk 'BEGIN{RS=""; FS="\n"} {u=""; s="";
             for (i=1;i<=NF;i++) {
               if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/,"",$i);   u=$i }
               if ($i ~ /^Suites:/) { sub(/^Suites:[ \t]*/,"",$i); s=$i } }
             if (u != "") print u, s }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -f $f ]] || continue
      # "deb [opts] URI suite comps" -> "URI suite"
      sed -E -n 's/^[[:space:]]*deb(-src)?[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+([^[:space:]]+).*/\3 \4/p' "$f"
    done
  } | awk -v c="$codename" '{for (i=2;i<=NF;i++) if ($i==c) {print $1; exit}}'
)
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
log "using mirror $mirror"

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
cat >"$SRC_LIST" <<EOF
# Temporary, written by scripts/install-pgvector.sh (removed when it exits).
# Source packages only; see $PIN_FILE.
Types: deb-src
URIs: $mirror
Suites: trixie
Components: main
Signed-By: $keyring
EOF
cat >"$PIN_FILE" <<EOF
# Temporary, written by scripts/install-pgvector.sh: never install anything from trixie.
Package: *
Pin: release n=trixie
Pin-Priority: -1
EOF

log "apt-get update"
apt-get update "${APT_OPTS[@]}" >"$WORKDIR/apt-update.log" 2>&1 \
  || { cat "$WORKDIR/apt-update.log" >&2; die "apt-get update failed"; }

# --- build dependencies (bookworm) ------------------------------------------
need=()
for p in "postgresql-server-dev-$PG_MAJOR" build-essential dpkg-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get install "${APT_OPTS[@]}" --no-install-recommends "${need[@]}" >"$WORKDIR/apt-install.log" 2>&1 \
    || { cat "$WORKDIR/apt-install.log" >&2; die "apt-get install failed"; }
else
  log "build dependencies already installed"
fi
[[ -x $PG_CONFIG ]] || die "$PG_CONFIG missing after installing postgresql-server-dev-$PG_MAJOR"

# --- fetch and build ---------------------------------------------------------
cd "$WORKDIR"
chown _apt "$WORKDIR" 2>/dev/null || true   # lets apt download sandboxed, no warning
log "apt-get source pgvector"
apt-get source "${APT_OPTS[@]}" pgvector >"$WORKDIR/apt-source.log" 2>&1 \
  || { cat "$WORKDIR/apt-source.log" >&2; die "apt-get source pgvector failed"; }
srcdir=$(find "$WORKDIR" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' -print -quit)
[[ -n $srcdir ]] || die "no unpacked pgvector source in $WORKDIR"
log "building $(basename "$srcdir") against $("$PG_CONFIG" --version)"

# OPTFLAGS: upstream defaults to -march=native; Debian builds with "" so the
# binary also runs on other CPUs (images/caches moved between hosts).
make_args=(PG_CONFIG="$PG_CONFIG" OPTFLAGS="${PGVECTOR_OPTFLAGS:-}")
make -C "$srcdir" -j"$(nproc)" "${make_args[@]}" >"$WORKDIR/make.log" 2>&1 \
  || { tail -n 40 "$WORKDIR/make.log" >&2; die "make failed"; }
make -C "$srcdir" "${make_args[@]}" install >"$WORKDIR/make-install.log" 2>&1 \
  || { tail -n 40 "$WORKDIR/make-install.log" >&2; die "make install failed"; }
log "installed into $("$PG_CONFIG" --pkglibdir) and $("$PG_CONFIG" --sharedir)/extension"

# --- verify -------------------------------------------------------------------
if [[ $server_up -eq 0 ]] && ! psql_q -c 'SELECT 1' >/dev/null 2>&1; then
  log "PostgreSQL not reachable at $PGHOST:$PGPORT; installed but not verified"
  exit 0
fi
had=$(psql_q -c "SELECT count(*) FROM pg_extension WHERE extname = 'vector'")
dist=$(psql_q -c "CREATE EXTENSION IF NOT EXISTS vector" \
              -c "SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector")
ver=$(psql_q -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
if [[ $had == 0 ]]; then
  psql_q -c "DROP EXTENSION vector"
  log "verified: vector $ver works in db $PGDATABASE (cosine distance = $dist); test extension dropped again"
else
  log "verified: vector $ver works in db $PGDATABASE (cosine distance = $dist); extension was already created, left in place"
fi
