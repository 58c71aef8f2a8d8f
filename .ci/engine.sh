#!/usr/bin/env bash
# .ci/engine.sh — provide a real container engine (Podman + its Docker-compatible
# API) for mkserve's engine-backed tests, on a Debian 12 machine with no Docker
# daemon and no reachable registry. See .ci/ENGINE-NOTES.md for the facts behind
# the choices made here.
#
# Usage (as root):
#   out=$(bash .ci/engine.sh start) && eval "$out"   # install, configure, serve, base image
#   bash .ci/engine.sh base    # only make sure localhost/mkserve-base:bookworm exists
#   bash .ci/engine.sh env     # only print the export lines
#   bash .ci/engine.sh stop    # stop the API service that `start` launched
#
# stdout carries only `export ...` lines (start, base, env); everything else goes
# to stderr. Nothing is exported into the caller's shell unless it evals them,
# and nothing is written to /etc: all state lives in $MKSERVE_ENGINE_DIR.
#
# Optional settings:
#   MKSERVE_ENGINE_DIR       state dir (default /var/tmp/mkserve-engine)
#   MKSERVE_ENGINE_DRIVER    storage driver (default overlay; use vfs where the
#                            state dir itself sits on overlayfs)
#   MKSERVE_DEBIAN_MIRROR    mirror for debootstrap (default: from apt sources)
#   PYTHON                   interpreter used to ping the API (default python3)
set -euo pipefail

DIR=${MKSERVE_ENGINE_DIR:-/var/tmp/mkserve-engine}
# An absolute path, because it ends up in config files and a socket URL.
case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
DRIVER=${MKSERVE_ENGINE_DRIVER:-overlay}
PY=${PYTHON:-python3}
BASE_IMAGE=localhost/mkserve-base:bookworm
SUITE=bookworm

CONF=$DIR/containers.conf
STORAGE_CONF=$DIR/storage.conf
REGISTRIES_CONF=$DIR/registries.conf
# The plain-HTTP registry tests push to (Debian's docker-registry, started by the tests):
# Podman speaks TLS to every registry not listed as insecure here.
TEST_REGISTRY=${MKSERVE_TEST_REGISTRY:-localhost:5111}
SOCK=$DIR/podman.sock
PIDFILE=$DIR/podman.pid
LOG=$DIR/podman-service.log
# Everything that must not survive a reboot (runroot, libpod tmp_dir) lives here.
VOLATILE=$DIR/run

log() { printf '[engine] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Run a command and log how long it took (CI logs then show where time goes).
timed() {
    local what=$1 t0=$SECONDS; shift
    "$@"
    log "$what took $((SECONDS - t0))s"
}

# Podman with our config, without exporting anything into the caller's shell.
pm() {
    CONTAINERS_CONF=$CONF CONTAINERS_STORAGE_CONF=$STORAGE_CONF \
        CONTAINERS_REGISTRIES_CONF=$REGISTRIES_CONF podman "$@"
}

print_env() {
    printf 'export CONTAINERS_CONF=%q\n' "$CONF"
    printf 'export CONTAINERS_STORAGE_CONF=%q\n' "$STORAGE_CONF"
    printf 'export DOCKER_HOST=%q\n' "unix://$SOCK"
    printf 'export MKSERVE_TEST_REGISTRY=%q\n' "$TEST_REGISTRY"
}

# --- 1. packages -----------------------------------------------------------

pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

install_packages() {
    local missing=() p
    for p in podman runc debootstrap; do
        pkg_installed "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "podman, runc, debootstrap already installed"
        return
    fi
    [ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
    log "installing: ${missing[*]}"
    # Only refresh the package lists when we actually install something: it is
    # the slow, network-bound part and unnecessary on a prepared machine.
    export DEBIAN_FRONTEND=noninteractive
    # apt/dpkg output goes to a log file and is shown only on failure.
    { apt-get update -q && apt-get install -y -q "${missing[@]}"; } >"$DIR/apt.log" 2>&1 \
        || { tail -n 30 "$DIR/apt.log" >&2; die "package installation failed (see $DIR/apt.log)"; }
}

# --- 2. configuration ------------------------------------------------------

# Write a file only when its content changes, so repeated runs are no-ops;
# CHANGED=1 afterwards when any file was (re)written (a running service must restart).
CHANGED=0
write_if_changed() {
    local path=$1 content=$2
    if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then return; fi
    printf '%s\n' "$content" >"$path.tmp.$$"
    mv -f "$path.tmp.$$" "$path"
    CHANGED=1
    log "wrote $path"
}

configure() {
    mkdir -p "$DIR" "$VOLATILE"
    # The state dir is on disk (not tmpfs) here, so after a reboot the runroot
    # would still describe mounts and containers that no longer exist. Detect
    # a new boot and start the volatile part afresh (nothing can be running).
    local boot_id
    boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
    if [ -f "$DIR/boot_id" ] && [ "$(cat "$DIR/boot_id")" != "$boot_id" ]; then
        log "new boot detected: clearing $VOLATILE"
        rm -rf "$VOLATILE" "$PIDFILE" "$SOCK"
        mkdir -p "$VOLATILE"
    fi
    echo "$boot_id" >"$DIR/boot_id"

    # default_ulimits = []: the sandbox lacks CAP_SYS_RESOURCE, so the default
    #   RLIMIT_NOFILE the runtime tries to set fails with EPERM.
    # runc + cgroupfs: crun refuses hybrid cgroup v1/v2 hosts, and there is no
    #   systemd to manage cgroups.
    # tmp_dir under the volatile dir: keeps libpod's state out of /run/libpod
    #   (shared with any system podman) and lets podman's own reboot detection
    #   line up with ours.
    # events_logger = "file": no journald on these machines.
    # network_config_dir: `podman network create` would otherwise write to
    #   /etc/containers/networks.
    write_if_changed "$CONF" "# written by .ci/engine.sh — do not edit
[containers]
default_ulimits = []

[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
tmp_dir = \"$VOLATILE/libpod\"

[network]
network_config_dir = \"$DIR/networks\""

    write_if_changed "$STORAGE_CONF" "# written by .ci/engine.sh — do not edit
[storage]
driver = \"$DRIVER\"
runroot = \"$VOLATILE/storage\"
graphroot = \"$DIR/graph\""

    # Names are always fully qualified in the tests (nothing can be pulled), so no
    # search registries; the test registry is plain HTTP on the loopback.
    write_if_changed "$REGISTRIES_CONF" "# written by .ci/engine.sh — do not edit
unqualified-search-registries = []

[[registry]]
location = \"$TEST_REGISTRY\"
insecure = true"
}

# --- 3. API service --------------------------------------------------------

# Succeeds when the Docker-compatible API answers on $SOCK. Uses the Docker SDK
# (what the tests use); falls back to a raw /_ping when the SDK isn't installed.
api_ping() {
    [ -S "$SOCK" ] || return 1
    "$PY" - "$SOCK" <<'EOF' >/dev/null 2>&1
import sys
sock = sys.argv[1]
try:
    import docker
except ImportError:
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(3)
    s.connect(sock)
    s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
    sys.exit(0 if s.recv(64).split()[1] == b"200" else 1)
docker.DockerClient(base_url="unix://" + sock, timeout=3).ping()
EOF
}

# Is $1 the pid of the `podman system service` we launched on $SOCK?
is_our_service() {
    local pid=$1 cmd
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    [[ $cmd == *"system service"*"$SOCK"* ]]
}

start_service() {
    command -v "$PY" >/dev/null || die "$PY is needed to check the API (set PYTHON=...)"
    if [ "$CHANGED" = 1 ] && api_ping; then
        log "configuration changed: restarting the service"
        stop_service
    fi
    if api_ping; then
        log "API already answering on $SOCK"
        return
    fi
    local pid=""
    [ -f "$PIDFILE" ] && pid=$(cat "$PIDFILE")
    if is_our_service "$pid"; then
        # Started but not answering (yet, or wedged): give it the same grace
        # period as a fresh start below before giving up on it.
        log "service pid $pid exists but does not answer yet"
    else
        # A socket file with no server behind it makes podman fail to bind.
        rm -f "$SOCK" "$PIDFILE"
        log "starting podman system service on unix://$SOCK (log: $LOG)"
        # setsid + nohup: the service must outlive this script and the CI step
        # that ran it; --time=0 disables the idle timeout. 9>&- closes the
        # lock fd: inherited, it would keep the lock held for the service's
        # whole life and every later run of this script would hang in flock.
        CONTAINERS_CONF=$CONF CONTAINERS_STORAGE_CONF=$STORAGE_CONF \
            CONTAINERS_REGISTRIES_CONF=$REGISTRIES_CONF setsid nohup podman system service --time=0 "unix://$SOCK" \
            </dev/null >>"$LOG" 2>&1 9>&- &
        pid=$!
        echo "$pid" >"$PIDFILE"
    fi
    local i
    for i in $(seq 1 60); do
        if api_ping; then
            log "API answering (pid $pid)"
            return
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$LOG" >&2 || true
            rm -f "$PIDFILE"
            die "podman system service exited"
        fi
        sleep 0.5
    done
    tail -n 20 "$LOG" >&2 || true
    die "API did not answer on $SOCK within 30s"
}

stop_service() {
    local pid=""
    [ -f "$PIDFILE" ] && pid=$(cat "$PIDFILE")
    if ! is_our_service "$pid"; then
        # Never kill something we did not start (pid reuse, foreign service).
        log "no service started by this script is running"
        rm -f "$PIDFILE"
        return
    fi
    log "stopping podman system service (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "service ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE" "$SOCK"
}

# --- 4. base image ---------------------------------------------------------

# The Debian mirror this machine's apt already uses (it is known to be
# reachable), preferring an entry for $SUITE itself over -updates/-security.
debian_mirror() {
    if [ -n "${MKSERVE_DEBIAN_MIRROR:-}" ]; then
        echo "$MKSERVE_DEBIAN_MIRROR"; return
    fi
    local files=() f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    local m=""
    if [ ${#files[@]} -gt 0 ]; then
        # One-line format: "deb [options] URI SUITE COMPONENTS...".
        # deb822 format (*.sources): blank-line separated stanzas with
        # "URIs:" and "Suites:" fields, possibly "Enabled: no".
        m=$(awk -v suite="$SUITE" '
            FNR == 1 { flush(); is822 = (FILENAME ~ /\.sources$/) }
            function flush() {
                if (uri != "" && enabled && (" " suites " ") ~ (" " suite " ") && found == "")
                    found = uri
                uri = ""; suites = ""; enabled = 1
            }
            is822 && /^[ \t]*$/ { flush(); next }
            /^[ \t]*#/ { next }
            is822 && tolower($1) == "uris:"    { uri = $2 }
            is822 && tolower($1) == "suites:"  { $1 = ""; suites = $0 }
            is822 && tolower($1) == "enabled:" { enabled = (tolower($2) != "no") }
            !is822 && $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite && found == "") found = $i
            }
            END { flush(); print found }
        ' "${files[@]}")
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

# Remove a (possibly half-built) rootfs. debootstrap mounts proc/sys (and may
# bind /dev) inside it and can leave them mounted when it fails or is
# interrupted; unmount those first and never let rm cross into a mount, so a
# failed build can't delete anything outside the rootfs.
remove_rootfs() {
    local root=$1 mnt
    [ -d "$root" ] || return 0
    awk -v r="$root" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    rm -rf --one-file-system "$root"
}

ensure_base() {
    if pm image exists "$BASE_IMAGE"; then
        log "$BASE_IMAGE already exists"
        return
    fi
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    local mirror rootfs
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d "$DIR/rootfs.XXXXXX")
    # The rootfs is only an intermediate (~180 MB): remove it however we exit.
    trap "remove_rootfs $(printf %q "$rootfs")" EXIT
    log "debootstrap $SUITE from $mirror into $rootfs"
    # Its chatter goes to a log file; shown only when it fails.
    local t0=$SECONDS
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >"$DIR/debootstrap.log" 2>&1 \
        || { tail -n 30 "$DIR/debootstrap.log" >&2; die "debootstrap failed (see $DIR/debootstrap.log)"; }
    log "debootstrap took $((SECONDS - t0))s"
    # Package caches are dead weight in an image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

    log "importing $rootfs as $BASE_IMAGE"
    # import gives an image with no config at all, so set what a Dockerfile
    # author expects from a Debian/Python base (PATH, UTF-8 locale, a CMD).
    # If tar fails mid-stream podman would still import the truncated stream,
    # so check both ends of the pipe and drop the image on any failure.
    t0=$SECONDS
    if ! tar -C "$rootfs" --numeric-owner -c . | pm import -q \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["python3"]' \
            --message "debootstrap --variant=minbase $SUITE (mkserve .ci/engine.sh)" \
            - "$BASE_IMAGE" >/dev/null; then
        pm rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
        die "import of the base image failed"
    fi
    log "import took $((SECONDS - t0))s"
    remove_rootfs "$rootfs"
    trap - EXIT
}

# --- main ------------------------------------------------------------------

# Serialize concurrent runs (parallel CI jobs on one machine) so that only one
# of them installs, starts the service or bootstraps the base image.
lock() {
    mkdir -p "$DIR"
    exec 9>"$DIR/lock"
    flock 9
}

cmd=${1:-}
case $cmd in
    start)
        lock
        timed "packages" install_packages
        configure
        timed "API service start" start_service
        timed "base image" ensure_base
        print_env
        ;;
    base)
        lock
        timed "packages" install_packages
        configure
        timed "base image" ensure_base
        print_env
        ;;
    stop)
        lock
        stop_service
        ;;
    env)
        print_env
        ;;
    *)
        echo "usage: $0 {start|base|stop|env}" >&2
        exit 2
        ;;
esac
