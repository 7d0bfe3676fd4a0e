#!/usr/bin/env bash
# Container entrypoint for fuseboxd. Checks what the server needs and says
# plainly what is missing, then execs fuseboxd (so it receives SIGTERM and SIGHUP).
#
# Environment:
#   FUSEBOX_CONFIG   config file              (default /etc/fusebox/fusebox.yaml)
#   FUSEBOX_DATA_DIR data directory (volume)  (default /var/lib/fusebox)
#   FUSEBOX_CERTS    directory with server.pem, server.key, ca.pem (default /etc/fusebox/certs)
#   FUSEBOXD         the binary               (default fuseboxd on PATH)
# Extra arguments are passed to `fuseboxd serve`.
set -euo pipefail

config=${FUSEBOX_CONFIG:-/etc/fusebox/fusebox.yaml}
data=${FUSEBOX_DATA_DIR:-/var/lib/fusebox}
certs=${FUSEBOX_CERTS:-/etc/fusebox/certs}
bin=${FUSEBOXD:-fuseboxd}

fail() { echo "entrypoint: $*" >&2; exit 78; }

[[ -r "$config" ]] || fail "config $config is missing or unreadable (mount it, or set FUSEBOX_CONFIG)"
for f in server.pem server.key ca.pem; do
  [[ -r "$certs/$f" ]] || fail "$certs/$f is missing or unreadable (mount the fusebox-tls secret there, or set FUSEBOX_CERTS)"
done
mkdir -p "$data" 2>/dev/null || true
[[ -w "$data" ]] || fail "data directory $data is not writable by uid $(id -u) (mount a volume there)"

exec "$bin" serve --config "$config" --data-dir "$data" \
  --cert "$certs/server.pem" --key "$certs/server.key" --client-ca "$certs/ca.pem" "$@"
