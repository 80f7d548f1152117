#!/bin/sh
# The container's entrypoint: refuse to listen on a public address without client keys, then run subrelay.
set -eu
command="${1:-serve}"
if [ "$command" = "serve" ]; then
  host="${SUBRELAY_HOST:-0.0.0.0}"
  case "$host" in
    127.*|localhost|::1) ;;
    *)
      if [ -z "${SUBRELAY_API_KEYS:-}" ]; then
        echo "subrelay: refusing to start: this container listens on $host, so anyone who can reach it could use" >&2
        echo "your logins. Set SUBRELAY_API_KEYS (comma-separated client keys, 16+ characters each)," >&2
        echo "e.g. SUBRELAY_API_KEYS=\$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')." >&2
        exit 2
      fi
      ;;
  esac
fi
exec subrelay "$@"
