#!/usr/bin/env bash
# Create the secret files docker-compose mounts (deploy/secrets/), keeping existing ones.
# Re-running is safe: a file that exists is never overwritten (rotating is deliberate, see
# docs/RUNBOOK.md).
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
py="$(command -v python3 || command -v python)"

make_secret() {  # name, python expression printing the value
  local path="$dir/$1"
  if [[ -s "$path" ]]; then
    echo "kept    $path"
    return
  fi
  (umask 022; "$py" -c "$2" > "$path.tmp")
  mv "$path.tmp" "$path"
  echo "created $path"
}

make_secret django_secret_key 'import secrets; print(secrets.token_urlsafe(50))'
make_secret postgres_password 'import secrets; print(secrets.token_urlsafe(24))'
make_secret qt_metrics_token 'import secrets; print(secrets.token_urlsafe(32))'
make_secret grafana_admin_password 'import secrets; print(secrets.token_urlsafe(18))'
# A Fernet key is 32 url-safe base64 bytes; made without the cryptography package.
make_secret qt_fernet_key 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'
