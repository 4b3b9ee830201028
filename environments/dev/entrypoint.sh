#!/bin/sh
# Start the dev container for one user. Everything personal or secret arrives now, never
# through the image:
#   DEV_UID, DEV_GID            the host user's ids: files written to bind mounts belong to them
#   DEV_SSH_AUTHORIZED_KEYS     their SSH public key(s) (or a file at /run/secrets/authorized_keys)
#   JUPYTER_TOKEN               JupyterLab's token, >= 32 characters (or /run/secrets/jupyter_token)
# With --check it validates that configuration and exits without changing anything.
set -eu

user=scientist
home="/home/$user"

fail() {
    echo "dev-entrypoint: $*" >&2
    exit 64
}

numeric_id() {
    case "$2" in
        '' | *[!0-9]*) fail "$1 must be a numeric id of the host user, e.g. -e $1=\$(id -u)" ;;
    esac
    [ "$2" -ne 0 ] || fail "$1=0: the dev user may not be root"
}

numeric_id DEV_UID "${DEV_UID:-}"
numeric_id DEV_GID "${DEV_GID:-}"

keys="${DEV_SSH_AUTHORIZED_KEYS:-}"
if [ -z "$keys" ] && [ -r /run/secrets/authorized_keys ]; then
    keys="$(cat /run/secrets/authorized_keys)"
fi
[ -n "$keys" ] || fail "no SSH public key: set DEV_SSH_AUTHORIZED_KEYS or mount /run/secrets/authorized_keys"
case "$keys" in
    *"PRIVATE KEY"*) fail "DEV_SSH_AUTHORIZED_KEYS holds a private key: give the public one (~/.ssh/id_ed25519.pub)" ;;
esac
printf '%s\n' "$keys" | grep -Eq '^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/=]+' \
    || fail "DEV_SSH_AUTHORIZED_KEYS holds no SSH public key"

token="${JUPYTER_TOKEN:-}"
if [ -z "$token" ] && [ -r /run/secrets/jupyter_token ]; then
    token="$(cat /run/secrets/jupyter_token)"
fi
[ "${#token}" -ge 32 ] || fail "JUPYTER_TOKEN must be set, at least 32 characters (e.g. openssl rand -hex 32)"

if [ "${1:-}" = "--check" ]; then
    echo "dev-entrypoint: configuration ok (user $user as $DEV_UID:$DEV_GID)"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || fail "start the container as root (the default): it maps $user to DEV_UID/DEV_GID, then drops privileges"

# The user gets the host user's ids. Only the home directory itself is chowned: bind mounts
# below it already belong to that user.
groupmod --non-unique --gid "$DEV_GID" "$user"
usermod --non-unique --uid "$DEV_UID" --gid "$DEV_GID" "$user"
chown "$DEV_UID:$DEV_GID" "$home"

# SSH: the keys go to a root-owned file; host keys are made per container, in memory-backed /run.
install -d -m 0755 -o root -g root /etc/ssh/authorized_keys /run/sshd
printf '%s\n' "$keys" > "/etc/ssh/authorized_keys/$user"
chmod 0644 "/etc/ssh/authorized_keys/$user"
install -d -m 0700 -o root -g root /run/sshd-keys
if [ ! -f /run/sshd-keys/ssh_host_ed25519_key ]; then
    ssh-keygen -q -t ed25519 -N '' -C "dev-container" -f /run/sshd-keys/ssh_host_ed25519_key
fi
/usr/sbin/sshd -t
/usr/sbin/sshd -e

# JupyterLab as the user; the token reaches it through its environment only.
unset DEV_SSH_AUTHORIZED_KEYS
export JUPYTER_TOKEN="$token" HOME="$home" USER="$user"
cd "$home"
exec setpriv --reuid "$DEV_UID" --regid "$DEV_GID" --init-groups \
    jupyter lab --config=/etc/jupyter/jupyter_server_config.py
