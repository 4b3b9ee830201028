#!/bin/sh
# Start the dev container for one user. Everything personal or secret arrives now, never
# through the image:
#   DEV_UID, DEV_GID            the host user's ids: files written to bind mounts belong to them
#   DEV_SSH_AUTHORIZED_KEYS     their SSH public key(s) (or a file at /run/secrets/authorized_keys)
#   JUPYTER_TOKEN               JupyterLab's token, >= 32 characters (or /run/secrets/jupyter_token)
#   DEV_SSHD_PORT               sshd's port (2222)
# Spawned by JupyterHub (JUPYTERHUB_API_TOKEN set), the arguments are the single-user server's
# command, the hub authenticates every request (no JUPYTER_TOKEN), a user without SSH keys gets
# JupyterLab only, sshd listens on the container's loopback (reached through the hub's
# websocket) and its host key lives in the persistent home, so it survives a respawn.
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

hub="${JUPYTERHUB_API_TOKEN:+yes}"
sshd_port="${DEV_SSHD_PORT:-2222}"
case "$sshd_port" in
    '' | *[!0-9]*) fail "DEV_SSHD_PORT must be a port number" ;;
esac

keys="${DEV_SSH_AUTHORIZED_KEYS:-}"
if [ -z "$keys" ] && [ -r /run/secrets/authorized_keys ]; then
    keys="$(cat /run/secrets/authorized_keys)"
fi
[ -n "$keys" ] || [ -n "$hub" ] \
    || fail "no SSH public key: set DEV_SSH_AUTHORIZED_KEYS or mount /run/secrets/authorized_keys"
case "$keys" in
    *"PRIVATE KEY"*) fail "DEV_SSH_AUTHORIZED_KEYS holds a private key: give the public one (~/.ssh/id_ed25519.pub)" ;;
esac
if [ -n "$keys" ]; then
    printf '%s\n' "$keys" | grep -Eq '^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/=]+' \
        || fail "DEV_SSH_AUTHORIZED_KEYS holds no SSH public key"
fi

token="${JUPYTER_TOKEN:-}"
if [ -z "$token" ] && [ -r /run/secrets/jupyter_token ]; then
    token="$(cat /run/secrets/jupyter_token)"
fi
[ "${#token}" -ge 32 ] || [ -n "$hub" ] \
    || fail "JUPYTER_TOKEN must be set, at least 32 characters (e.g. openssl rand -hex 32)"

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

# SSH: the keys go to a root-owned file (rewritten at every start, so a key removed in GitLab is
# gone after the next spawn). The host key is made once per container in memory-backed /run, or,
# under the hub, once per user in a root-owned folder of the persistent home: the user cannot
# read it, and a respawned container answers with the same key (no known_hosts warning).
install -d -m 0755 -o root -g root /etc/ssh/authorized_keys /run/sshd
printf '%s\n' "$keys" > "/etc/ssh/authorized_keys/$user"
chmod 0644 "/etc/ssh/authorized_keys/$user"
host_keys=/run/sshd-keys
listen=0.0.0.0
if [ -n "$hub" ]; then
    host_keys="$home/.sshd-host-keys"
    listen=127.0.0.1
fi
install -d -m 0700 -o root -g root "$host_keys"
if [ ! -f "$host_keys/ssh_host_ed25519_key" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "dev-container" -f "$host_keys/ssh_host_ed25519_key"
fi
sshd_options="-p $sshd_port -o ListenAddress=$listen -o HostKey=$host_keys/ssh_host_ed25519_key"
# shellcheck disable=SC2086 # the options are split on purpose
/usr/sbin/sshd -t $sshd_options
# shellcheck disable=SC2086
/usr/sbin/sshd -e $sshd_options

# The user's server: JupyterLab with its token from the environment, or the command the hub gave.
unset DEV_SSH_AUTHORIZED_KEYS
export HOME="$home" USER="$user"
cd "$home"
if [ "$#" -eq 0 ]; then
    export JUPYTER_TOKEN="$token"
    set -- jupyter lab --config=/etc/jupyter/jupyter_server_config.py
fi
exec setpriv --reuid "$DEV_UID" --regid "$DEV_GID" --init-groups "$@"
