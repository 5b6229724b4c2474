#!/usr/bin/env bash
# simulate-cluster.sh: a Compose cluster of real hosts for steps 02 and 03, built without a
# registry, with faults injected the way real clusters fail.
#
#   build                  base image from Debian packages, wheelhouse, project image
#   start [--workers N] [--bare]
#                          coordinator, monitor and N nodes (default 3), waits until healthy;
#                          --bare: nodes and collector host as bare hosts (systemd, sshd, no
#                          agent, no collector) for `deploy` to install
#   deploy                 the fleet deployment (integration-plan/deploy, Ansible over SSH) to a
#                          bare cluster: core install, keys, systemd units, then a ping per agent
#   rotate                 rotate the controller key across the fleet (add, switch, revoke)
#   remove                 the deployment's removal (state=absent): nothing of it left on the hosts
#   status [--json]        services, health, and the faults in force (--json: for scripts)
#   logs [SERVICE]         recent logs of one service or all
#   fail NODE / recover NODE    SIGKILL the node's container / start it again
#   pause NODE / resume NODE    freeze / thaw every process on the node
#   partition NODE [NODE...]    cut these nodes off from the rest (iptables DROP inside them)
#   (partition, flaky and slow take --dry-run first: print the steps, run nothing)
#   heal [NODE]            lift the partition of one node, or of all
#   flaky NODE LOSS%       drop that share of the node's packets at random (iptables statistic)
#   slow NODE DELAY        add DELAY (e.g. 100ms) to every round trip through the node (a relay,
#                          as this kernel may have no netem; resets the node's connections once)
#   fast NODE              take the lossy and slow links away again
#   test [--duration S]    a workload inside the cluster while nodes are killed, partitioned and lossy;
#                          PASS only if every task and every journal record arrived exactly once
#   bench [--quick] [--json FILE]
#                          SSH vs ZeroMQ between containers, and how long the coordinator takes
#                          to notice a node killed, frozen or cut off (docker/.build/bench.json)
#   kill-agent NODE / start-agent NODE
#                          SIGKILL only the node's ZeroMQ agent (sshd stays) / start it again
#   drill [--duration S]   the rollback drill: commands through the fallback executor while one
#                          node's agent is killed and restarted; PASS only if that node was served
#                          over SSH meanwhile and every record arrived exactly once
#   stop                   stop the cluster (containers stay for `start`)
#   cleanup                remove everything this script made: containers, network, images, .build
#
# Every fault's start and end goes, with a timestamp and its target, into the same event log
# as the cluster's own events (docker/.build/events/events.jsonl, written by the monitor).
# Containers are found by their Compose labels, never by names this script makes up.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="$HERE/.build"
PROJECT="${ZCL_PROJECT:-zcl}"
BASE_IMAGE="zcl-base:bookworm"
NODE_IMAGE="zcl-node:latest"
BARE_IMAGE="zcl-bare:latest"  # a node with systemd and sshd only: what `deploy` installs onto
DEPLOY="$HERE/../integration-plan/deploy"
IMAGE_LABEL="org.zmq-cluster-lab.image"  # on every image this script makes
EVENTS="$BUILD/events/events.jsonl"
DEFAULT_WORKERS=3
STARTED_IN_CLUSTER=()  # containers a verb ran on the cluster's network, removed when it ends
SLOW_PORT=15001  # the slow-link relay inside a node (cluster_sim.lab.faults.SLOW_PORT)

die() { echo "simulate-cluster.sh: error: $*" >&2; exit 1; }
say() { echo "simulate-cluster.sh: $*"; }
usage() {  # the header comment above, without its hash marks
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
}

compose() {
    local files=(-f "$HERE/docker-compose.yml")
    [ -f "$BUILD/workers.yml" ] && files+=(-f "$BUILD/workers.yml")
    [ -f "$BUILD/bare.yml" ] && files+=(-f "$BUILD/bare.yml")
    if docker compose version >/dev/null 2>&1; then
        docker compose -p "$PROJECT" "${files[@]}" "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose -p "$PROJECT" "${files[@]}" "$@"
    else
        die "neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed"
    fi
}

container_of() {  # the container id of a service, looked up by its Compose labels
    docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -n 1
}

node_services() {
    docker ps -a --filter "label=com.docker.compose.project=$PROJECT" --filter "label=zcl.role=node" \
        --format '{{.Label "com.docker.compose.service"}}' | sort -V
}

require_node() {
    local name="${1:-}"
    [ -n "$name" ] || die "name a node, e.g. worker1 (nodes: $(node_services | tr '\n' ' '))"
    [ -n "$(container_of "$name")" ] \
        || die "no node '$name' in this cluster (nodes: $(node_services | tr '\n' ' '))"
}

now() { date +%s.%N; }

PY() { "${PYTHON:-$HERE/../.venv/bin/python}" "$@"; }  # the controller's venv, for the lab's tools

record() {  # one line in the shared event log: what happened, to whom, when (default: now)
    PY -m cluster_sim.lab.event_log --events "$EVENTS" "$1" "$2" ${3:+--ts "$3"}
}

DRY_RUN=0  # --dry-run before a fault's arguments: print its steps, run nothing

run_recipe() {  # NODE RECIPE ARGS...: a fault's steps (cluster_sim.lab.faults) inside the node
    local node="$1" steps step
    shift
    steps=$(PY -m cluster_sim.lab.faults "$@") || exit 1
    while IFS= read -r step; do
        if [ "$DRY_RUN" = 1 ]; then echo "$node: $step"; else in_node "$node" sh -c "$step"; fi
    done <<< "$steps"
}

help_for() {  # `VERB --help` prints the verb's line of the usage
    if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
        usage | grep -E "^  $VERB( |/)|/ $VERB " || usage
        exit 0
    fi
}

cmd_build() {
    # Everything the build needs is checked before its long first step, not after it.
    local python="${PYTHON:-$HERE/../.venv/bin/python}"
    [ -x "$python" ] || die "no $python: run 'make test' or 'make demo' once first (it makes the venv)"
    command -v docker >/dev/null || die "docker is not installed"
    docker info >/dev/null 2>&1 || die "no Docker Engine answers (docker info failed)"
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: apt-get install mmdebstrap"
    fi
    mkdir -p "$BUILD"
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        local sources=/etc/apt/sources.list.d/debian.sources
        [ -f "$sources" ] || sources=/etc/apt/sources.list
        say "building $BASE_IMAGE from Debian packages (about a minute)"
        # systemd and sudo: the bare nodes boot with systemd and let the deployment's user in
        mmdebstrap --quiet --variant=minbase \
            --include=python3,python3-venv,openssh-server,iproute2,iptables,procps,tini,systemd,systemd-sysv,sudo \
            bookworm "$BUILD/base.tar" "$sources"
        docker import --change "LABEL $IMAGE_LABEL=base" "$BUILD/base.tar" "$BASE_IMAGE" >/dev/null
        rm -f "$BUILD/base.tar"
    fi
    say "wheelhouse: the project and the dependency versions the tests use"
    rm -rf "$BUILD/image" && mkdir -p "$BUILD/image/wheels"
    "$python" -m pip freeze --exclude-editable > "$BUILD/constraints.txt"
    "$python" -m pip wheel --quiet --constraint "$BUILD/constraints.txt" \
        --wheel-dir "$BUILD/image/wheels" "$HERE/..[lab]"
    cp "$HERE/Dockerfile" "$HERE/node-init.sh" "$HERE/sshd-keys-only.conf" "$BUILD/image/"
    say "building $NODE_IMAGE"
    local previous
    previous=$(docker image inspect -f '{{.Id}}' "$NODE_IMAGE" 2>/dev/null || true)
    docker build --quiet --pull=false --build-arg "BASE=$BASE_IMAGE" -t "$NODE_IMAGE" \
        "$BUILD/image" >/dev/null
    if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$NODE_IMAGE")" ]; then
        # The image it replaces would stay behind untagged; containers still using it keep it.
        docker image rm "$previous" >/dev/null 2>&1 || true
    fi
    say "building $BARE_IMAGE"
    docker build --quiet --pull=false --build-arg "NODE=$NODE_IMAGE" -t "$BARE_IMAGE" \
        "$HERE/bare" >/dev/null
    say "built $NODE_IMAGE and $BARE_IMAGE"
}

write_workers() {  # nodes beyond the compose file's three, as an override file
    local count="$1"
    rm -f "$BUILD/workers.yml"
    [ "$count" -gt "$DEFAULT_WORKERS" ] || return 0
    {
        echo "services:"
        for n in $(seq $((DEFAULT_WORKERS + 1)) "$count"); do
            printf '  worker%s:\n    extends: {file: %s, service: worker1}\n' "$n" "$HERE/docker-compose.yml"
            printf '    hostname: worker%s\n    environment: {NODE_NAME: worker%s}\n' "$n" "$n"
            printf '    volumes: [%s/mounts/worker%s:/keys:ro]\n' "$BUILD" "$n"
        done
    } > "$BUILD/workers.yml"
}

ZCL_UID=990  # the image's zcl user (Dockerfile), who runs the nodes' daemons

lay_out_keys() {  # BARE NODE...: each container's own keys, in .build/mounts/ROLE, private
    local bare="$1" node
    shift
    rm -rf "$BUILD/mounts"
    for node in "$@"; do  # a node: its host key, its worker's key, the SSH public key
        if [ "$bare" = 1 ]; then  # the agent's keys come with the deployment
            mount_keys "$node" "$ZCL_UID" "mdp/controllers/$node" ssh/id_ed25519.pub
        else
            mount_keys "$node" "$ZCL_UID" "nodes/$node" "mdp/controllers/$node" ssh/id_ed25519.pub
        fi
    done
    mount_keys coordinator 0 mdp/nodes/coordinator
    mount_keys monitor 0 mdp/controllers/monitor
    if [ "$bare" = 1 ]; then  # the collector host: only the key the deployment logs in with
        mount_keys collector 0 ssh/id_ed25519.pub
    else
        mount_keys collector 0 nodes/collector
    fi
    mount_runner_keys
}

current_controller() {  # the controller key the runners use (rotate switches it)
    cat "$BUILD/controller" 2>/dev/null || echo runner
}

mount_runner_keys() {
    # What runs the workloads from inside the cluster: the controller's keys, the MDP client's,
    # the dashboard's, and the SSH private key.
    rm -rf "$BUILD/mounts/runner"
    mount_keys runner 0 "controllers/$(current_controller)" mdp/controllers/runner \
        mdp/controllers/monitor ssh
}

mount_keys() {  # ROLE OWNER PATH...: copy PATHs (under .build/keys) for ROLE, owned by OWNER
    local dest="$BUILD/mounts/$1" owner="$2"
    mkdir -p "$dest"
    (cd "$BUILD/keys" && cp -r --parents "${@:3}" "$dest")
    chown -R "$owner:$owner" "$dest"
    find "$dest" -type d -exec chmod 700 {} +
    find "$dest" -type f -exec chmod 644 {} +
    find "$dest" -type f \( -name '*.key_secret' -o -name id_ed25519 \) -exec chmod 600 {} +
}

wait_healthy() {
    local deadline=$((SECONDS + 90))
    until [ "$(docker inspect -f '{{.State.Health.Status}}' "$(container_of "$1")")" = healthy ]; do
        [ $SECONDS -lt $deadline ] || die "$1 did not become healthy (see: logs $1)"
        sleep 1  # Docker has no call that waits for a health status: poll it
    done
}

cmd_start() {
    local workers=$DEFAULT_WORKERS bare=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --workers) workers="${2:-}"; shift 2 || die "--workers needs a number" ;;
            --bare) bare=1; shift ;;
            *) die "start: unknown option '$1' (try start --help)" ;;
        esac
    done
    [[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "--workers needs a whole number >= 1, got '$workers'"
    docker image inspect "$NODE_IMAGE" >/dev/null 2>&1 || die "no $NODE_IMAGE: run build first"
    mkdir -p "$BUILD/events"
    local nodes=()
    for n in $(seq 1 "$workers"); do nodes+=("worker$n"); done
    if [ ! -d "$BUILD/keys/nodes" ] \
        || [ "$(find "$BUILD/keys/nodes" -mindepth 1 -maxdepth 1 | wc -l)" -le "$workers" ] \
        || [ ! -d "$BUILD/keys/mdp/controllers/worker$workers" ]; then
        rm -rf "$BUILD/keys"
        "${PYTHON:-$HERE/../.venv/bin/python}" -m cluster_sim.keys generate "$BUILD/keys" \
            --nodes "${nodes[@]}" collector --controllers runner >/dev/null
        # Step 02's coordinator has a key domain of its own: its workers' keys open no agent.
        "${PYTHON:-$HERE/../.venv/bin/python}" -m cluster_sim.keys generate "$BUILD/keys/mdp" \
            --nodes coordinator --controllers "${nodes[@]}" runner monitor >/dev/null
    fi
    if [ ! -f "$BUILD/keys/ssh/id_ed25519" ]; then  # for the SSH side of `bench`
        mkdir -p "$BUILD/keys/ssh"
        docker run --rm -v "$BUILD/keys/ssh:/ssh" "$NODE_IMAGE" \
            ssh-keygen -q -t ed25519 -N '' -C zcl-bench -f /ssh/id_ed25519
    fi
    rm -f "$BUILD/controller"  # new keys: the runners use the first controller key
    lay_out_keys "$bare" "${nodes[@]}"
    write_workers "$workers"
    rm -f "$BUILD/bare.yml"
    if [ "$bare" = 1 ]; then
        docker image inspect "$BARE_IMAGE" >/dev/null 2>&1 || die "no $BARE_IMAGE: run build first"
        "${PYTHON:-$HERE/../.venv/bin/python}" -m cluster_sim.lab.fleet compose-bare \
            --workers "$workers" --out "$BUILD/bare.yml"
    fi
    compose up -d --no-build coordinator monitor collector >/dev/null
    wait_healthy coordinator
    wait_healthy collector
    compose up -d --no-build "${nodes[@]}" >/dev/null
    say "waiting for ${#nodes[@]} node(s) to be healthy"
    for node in "${nodes[@]}"; do wait_healthy "$node"; done
    if [ "$bare" = 1 ]; then
        record cluster.started "${#nodes[@]} bare nodes"
        say "bare cluster up: coordinator, monitor, collector host, ${nodes[*]} (no agents: deploy)"
    else
        record cluster.started "${#nodes[@]} nodes"
        say "cluster up: coordinator, monitor, ${nodes[*]}"
    fi
}

playbook() {  # PLAYBOOK ARGS...: run one of the deployment's playbooks against the cluster
    local python="${PYTHON:-$HERE/../.venv/bin/python}"
    [ -f "$BUILD/bare.yml" ] || die "deploy, rotate and remove need a bare cluster (start --bare)"
    [ -x "$(dirname "$python")/ansible-playbook" ] \
        || die "no ansible-playbook beside $python: run 'make test' or 'make demo' once first"
    "$python" -m cluster_sim.lab.fleet inventory --project "$PROJECT" --build "$BUILD" \
        --controller "$(current_controller)"
    local code=0
    ANSIBLE_CONFIG="$DEPLOY/ansible.cfg" ANSIBLE_NOCOLOR=1 \
        "$(dirname "$python")/ansible-playbook" -i "$BUILD/inventory.ini" "$DEPLOY/$1" "${@:2}" \
        | tee "$BUILD/ansible.log" || code=$?
    [ "$code" = 0 ] || die "$1 failed (output above, and in $BUILD/ansible.log)"
}

cmd_deploy() {
    local python="${PYTHON:-$HERE/../.venv/bin/python}"
    say "wheelhouse: the core install (the project, pyzmq, msgpack) for the nodes"
    rm -rf "$BUILD/wheelhouse" && mkdir -p "$BUILD/wheelhouse"
    "$python" -m pip freeze --exclude-editable > "$BUILD/constraints.txt"
    # The same sources make the same wheel, byte for byte (zip timestamps from
    # SOURCE_DATE_EPOCH), so a second deploy finds nothing to copy and restarts nothing.
    SOURCE_DATE_EPOCH=315532800 "$python" -m pip wheel --quiet \
        --constraint "$BUILD/constraints.txt" --wheel-dir "$BUILD/wheelhouse" "$HERE/.."
    playbook site.yml
    record deploy.finished "$(current_controller)"
    say "deployed"
}

cmd_rotate() {
    local old new
    old=$(current_controller)
    new="runner-$(date +%Y%m%d%H%M%S)"
    playbook rotate-controller-key.yml -e "zcl_old_controller=$old" -e "zcl_new_controller=$new"
    echo "$new" > "$BUILD/controller"  # the switch: the runners use the new key from now on
    mount_runner_keys
    record rotate.finished "$old -> $new"
    say "controller key rotated: $old refused everywhere, $new served"
}

cmd_remove() {
    playbook site.yml -e zcl_state=absent
    record remove.finished all
    say "removed the deployment from every host"
}

cmd_status() {  # [--json]: cluster_sim.lab.cluster_status reads it through the Docker SDK
    PY -m cluster_sim.lab.cluster_status --project "$PROJECT" "$@"
}

cmd_logs() {
    if [ -n "${1:-}" ]; then
        [ -n "$(container_of "$1")" ] || die "no service '$1' (try status)"
        docker logs --tail 200 "$(container_of "$1")"
    else
        compose logs --tail 50
    fi
}

container_fault() {  # NODE EVENT MESSAGE DOCKER-VERB...: act on the node's container, log it
    local node="${1:-}" event="$2" message="$3"
    require_node "$node"
    FAULT_TS=$(now)  # when the fault began, not when docker returned
    docker "${@:4}" "$(container_of "$node")" >/dev/null
    record "$event" "$node" "$FAULT_TS"
    say "$node $message"
}

cmd_fail() { container_fault "${1:-}" fault.start.fail "killed (SIGKILL)" kill --signal KILL; }
cmd_recover() { container_fault "${1:-}" fault.end.fail "started again" start; }
cmd_pause() { container_fault "${1:-}" fault.start.pause "frozen" pause; }
cmd_resume() { container_fault "${1:-}" fault.end.pause "running again" unpause; }

ip_of() {
    docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(container_of "$1")"
}

in_node() {  # run a command inside a node's container
    docker exec "$(container_of "$1")" "${@:2}"
}

partitioned() {
    in_node "$1" iptables -S ZCL-PARTITION >/dev/null 2>&1
}

cmd_partition() {
    [ $# -gt 0 ] || die "name the node(s) to cut off, e.g. partition worker1 worker2"
    local node named
    for node in "$@"; do require_node "$node"; done
    for node in "$@"; do
        partitioned "$node" && die "$node is already partitioned (heal it first)"
        # The node keeps its loopback and the other nodes named with it; everything else
        # (coordinator, collector, runners) is on the far side. The monitor talks only to the
        # coordinator, so its view of the cluster stays intact.
        local peers=()
        for named in "$@"; do
            [ "$named" = "$node" ] || peers+=(--peer "$(ip_of "$named")")
        done
        run_recipe "$node" partition "${peers[@]}"
        FAULT_TS=$(now)  # the partition begins when the chain is hooked in
        run_recipe "$node" partition-hook
        [ "$DRY_RUN" = 1 ] || record fault.start.partition "$node" "$FAULT_TS"
    done
    [ "$DRY_RUN" = 0 ] || return 0
    say "partitioned: $*"
}

cmd_heal() {
    local nodes=("$@") node
    [ $# -gt 0 ] || mapfile -t nodes < <(node_services)
    for node in "${nodes[@]}"; do
        require_node "$node"
        partitioned "$node" || continue
        FAULT_TS=$(now)
        run_recipe "$node" heal
        record fault.end.partition "$node" "$FAULT_TS"
        say "healed $node"
    done
}

lossy() {
    in_node "$1" iptables -S ZCL-FLAKY >/dev/null 2>&1
}

cmd_flaky() {
    require_node "${1:-}"
    local loss="${2:-}"
    [[ "$loss" =~ ^([1-9][0-9]?)%?$ ]] || die "flaky needs a loss between 1% and 99%, got '$loss'"
    loss="${BASH_REMATCH[1]}"
    lossy "$1" && die "$1 is already flaky (fast $1 first)"
    run_recipe "$1" flaky "$loss"
    [ "$DRY_RUN" = 0 ] || return 0
    record "fault.start.flaky.$loss%" "$1"
    say "$1 now loses $loss% of its packets"
}

agent_down() {
    # "[z]" keeps the pattern from matching a command line that contains it, such as the
    # health check's shell running at the same moment.
    ! in_node "$1" pgrep -f '[z]cl-agent' >/dev/null
}

deployed_agent() {  # is the node's agent the deployment's systemd unit (start --bare, deploy)?
    in_node "$1" systemctl is-enabled --quiet zcl-agent 2>/dev/null
}

cmd_kill_agent() {
    require_node "${1:-}"
    agent_down "$1" && die "the agent on $1 is already down (start-agent $1)"
    FAULT_TS=$(now)
    if deployed_agent "$1"; then  # a unit: killed, and kept down (Restart= would bring it back)
        in_node "$1" systemctl kill --signal=KILL zcl-agent
        in_node "$1" systemctl stop zcl-agent
    else
        in_node "$1" pkill -KILL -f '[z]cl-agent'
    fi
    record fault.start.agent-down "$1" "$FAULT_TS"
    say "$1's agent killed (SIGKILL); its sshd still answers"
}

cmd_start_agent() {
    require_node "${1:-}"
    agent_down "$1" || { say "the agent on $1 is running"; return 0; }
    FAULT_TS=$(now)
    if deployed_agent "$1"; then
        in_node "$1" systemctl start zcl-agent
    else
        docker exec -d -u zcl -e HOME=/home/zcl "$(container_of "$1")" \
            zcl-agent --bind "tcp://*:5560" --keys "/keys/nodes/$1" --file-root /var/lib/zcl-agent
    fi
    local deadline=$((SECONDS + 20))
    until [ -n "$(in_node "$1" ss -Hltn "sport = :5560")" ]; do
        [ $SECONDS -lt $deadline ] || die "the agent on $1 did not start (see: logs $1)"
        sleep 0.1  # it runs detached: poll for its listening socket
    done
    record fault.end.agent-down "$1" "$FAULT_TS"
    say "$1's agent started again"
}

slowed() {
    in_node "$1" iptables -t nat -S ZCL-SLOW >/dev/null 2>&1
}

cmd_slow() {
    require_node "${1:-}"
    local delay="${2:-}"
    [[ "$delay" =~ ^([0-9]+)(ms|s)$|^([0-9]*\.[0-9]+)s$ ]] \
        || die "slow needs a delay such as 100ms or 0.5s, got '$delay'"
    slowed "$1" && die "$1 is already slow (fast $1 first)"
    if [ "$DRY_RUN" = 1 ]; then
        echo "$1: python -m cluster_sim.lab.slow_link --port $SLOW_PORT --delay $delay (detached)"
        run_recipe "$1" slow "$delay"
        return 0
    fi
    docker exec -d "$(container_of "$1")" \
        python -m cluster_sim.lab.slow_link --port "$SLOW_PORT" --delay "$delay"
    local deadline=$((SECONDS + 10))
    until [ -n "$(in_node "$1" ss -Hltn "sport = :$SLOW_PORT")" ]; do
        [ $SECONDS -lt $deadline ] || die "the slow-link relay did not start on $1 (delay '$delay')"
        sleep 0.1  # the relay runs detached: poll for its listening socket
    done
    run_recipe "$1" slow "$delay" >/dev/null
    record "fault.start.slow.$delay" "$1"
    say "$1 now adds $delay to every round trip"
}

cmd_fast() {
    require_node "${1:-}"
    local healed=0
    if lossy "$1"; then
        run_recipe "$1" unflaky
        record fault.end.flaky "$1"
        healed=1
    fi
    if slowed "$1"; then
        run_recipe "$1" unslow
        record fault.end.slow "$1"
        healed=1
    fi
    [ $healed = 1 ] || { say "$1 has no lossy or slow link"; return 0; }
    say "$1 has a clean, fast link again"
}

require_clean_cluster() {  # VERB: sets `nodes`: 2 or more, all running, none with a fault
    local listed
    listed=$(PY -m cluster_sim.lab.cluster_status --project "$PROJECT" --clean-nodes "$1") \
        || exit 1
    mapfile -t nodes <<< "$listed"
}

start_in_cluster() {  # ROLE CMD...: run CMD in a container of our image on the cluster's network
    local network
    network=$(docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}' \
        "$(container_of coordinator)")
    IN_CLUSTER=$(docker run -d --network "$network" --label "com.docker.compose.project=$PROJECT" \
        --label "zcl.role=$1" -v "$BUILD/mounts/runner:/keys:ro" -v "$BUILD/events:/events" \
        -e COLUMNS=100 "$NODE_IMAGE" "${@:2}")
    STARTED_IN_CLUSTER+=("$IN_CLUSTER")
    # shellcheck disable=SC2154  # the trap expands the array when the script exits
    trap 'docker rm -f "${STARTED_IN_CLUSTER[@]}" >/dev/null 2>&1 || true' EXIT  # also on failure
}

parse_duration() {  # VERB ARGS...: sets `duration` from [--duration S] (default 20)
    local verb="$1"
    shift
    duration=20
    while [ $# -gt 0 ]; do
        case "$1" in
            --duration) duration="${2:-}"; shift 2 || die "--duration needs seconds" ;;
            *) die "$verb: unknown option '$1' (try $verb --help)" ;;
        esac
    done
    [[ "$duration" =~ ^[1-9][0-9]*$ ]] || die "--duration needs whole seconds, got '$duration'"
}

finish_in_cluster() {  # VERB: wait for the workload started last, show its verdict, fail with it
    local code
    code=$(docker wait "$IN_CLUSTER")
    docker logs "$IN_CLUSTER" 2>&1 | tail -n 2
    record "$1.finished" "exit $code"
    [ "$code" = 0 ] || die "the $1 workload failed (exit $code; its verdict is above)"
}

cmd_test() {
    local duration
    parse_duration test "$@"
    require_clean_cluster test
    rm -f "$BUILD/events/faults-over"
    start_in_cluster workload python -m cluster_sim.lab.cluster_workload \
        --nodes "$(IFS=,; echo "${nodes[*]}")" --duration "$duration" \
        --keys "/keys/controllers/$(current_controller)" \
        --until-file /events/faults-over
    record test.started "${nodes[*]}"
    local third=$((duration / 4 + 1))
    if [ "${#nodes[@]}" -ge 3 ]; then  # a slow and lossy link for the whole run
        cmd_slow "${nodes[2]}" 50ms
        cmd_flaky "${nodes[2]}" 20
    fi
    sleep "$third"  # let the load run before the first fault
    local killed_at cut_at healed_at offset
    offset=$(stat -c %s "$EVENTS")
    cmd_fail "${nodes[0]}"
    killed_at=$FAULT_TS
    sleep "$third"
    cmd_recover "${nodes[0]}"
    cmd_partition "${nodes[1]}"
    cut_at=$FAULT_TS
    sleep "$third"
    cmd_heal "${nodes[1]}"
    healed_at=$FAULT_TS
    [ "${#nodes[@]}" -ge 3 ] && cmd_fast "${nodes[2]}"
    # The tasks go on until the healed node has taken one again: the workload's clock started
    # before the faults, which a loaded machine injects late.
    local back_at took_at
    back_at=$(wait_event worker.joined "${nodes[1]}" "$healed_at" "$offset")
    took_at=$(wait_event task.assigned "${nodes[1]}" "$healed_at" "$offset")
    touch "$BUILD/events/faults-over"
    say "faults healed; waiting for the workload to finish"
    finish_in_cluster test
    say "${nodes[0]} declared dead $(wait_event worker.dead "${nodes[0]}" "$killed_at" "$offset") s after it was killed"
    say "${nodes[1]} declared dead $(wait_event worker.dead "${nodes[1]}" "$cut_at" "$offset") s after it was cut off, back $back_at s after healing, took a task again $took_at s after"
    say "PASS"
}

cmd_drill() {
    local duration
    parse_duration drill "$@"
    require_clean_cluster drill
    local victim="${nodes[1]}" third=$((duration / 3 + 1))
    start_in_cluster drill python -m cluster_sim.lab.cluster_workload --fallback \
        --expect-fallback "$victim" --nodes "$(IFS=,; echo "${nodes[*]}")" --duration "$duration" \
        --keys "/keys/controllers/$(current_controller)"
    record drill.started "${nodes[*]}"
    sleep "$third"  # ZeroMQ serves every node first
    cmd_kill_agent "$victim"
    sleep "$third"  # its circuit opens; SSH serves it
    cmd_start_agent "$victim"
    say "agent back; waiting for the drill to finish (the circuit closes after a probe)"
    finish_in_cluster drill
    say "PASS"
}

wait_event() {  # TOPIC NODE SINCE OFFSET: seconds from SINCE until the coordinator said TOPIC
    "${PYTHON:-$HERE/../.venv/bin/python}" -m cluster_sim.lab.cluster_bench wait-event \
        --events "$EVENTS" --topic "$1" --worker "$2" --since "$3" --offset "$4" --timeout 60 \
        || die "the coordinator never reported $1 for $2"
}

cmd_bench() {
    local out="" transports=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --json) out="${2:-}"; shift 2 || die "--json needs a file name" ;;
            --quick) transports=(--rounds 2 --latency 20 --throughput 100); shift ;;
            *) die "bench: unknown option '$1' (try bench --help)" ;;
        esac
    done
    require_clean_cluster bench
    local target="${nodes[0]}" victim="${nodes[-1]}"
    say "SSH vs ZeroMQ, from a runner container to $target"
    start_in_cluster bench python -m cluster_sim.lab.cluster_bench transports --node "$target" \
        --keys "/keys/controllers/$(current_controller)" \
        --out /events/bench-transports.json "${transports[@]}"
    docker logs -f "$IN_CLUSTER"
    [ "$(docker wait "$IN_CLUSTER")" = 0 ] || die "the transport measurement failed (output above)"
    # A dashboard watches the faults; its last frame and `status` while the node is cut off
    # are saved with the figures, as a record of what an operator sees.
    rm -f "$BUILD/events/dashboard.jsonl"
    start_in_cluster dashboard zcl-monitor --keys /keys/mdp/controllers/monitor \
        --events tcp://coordinator:5556 --no-metrics --json-log /events/dashboard.jsonl
    local dashboard=$IN_CLUSTER deadline=$((SECONDS + 30))
    until [ -s "$BUILD/events/dashboard.jsonl" ]; do  # its first event: it is subscribed
        [ $SECONDS -lt $deadline ] || die "the dashboard received no event (see: docker logs $dashboard)"
        sleep 0.2  # the file is the only sign from inside the container: poll it
    done
    local faults=() kind offset detected rejoined since
    since=$(now)  # the timeline of faults and verdicts starts here
    for kind in fail pause partition; do
        say "failure detection: $kind $victim"
        offset=$(stat -c %s "$EVENTS")
        "cmd_$kind" "$victim"
        detected=$(wait_event worker.dead "$victim" "$FAULT_TS" "$offset")
        if [ "$kind" = partition ]; then
            PY -m cluster_sim.lab.cluster_status --project "$PROJECT" \
                > "$BUILD/status-during-partition.txt"
            docker stop "$dashboard" >/dev/null  # SIGTERM: the monitor prints its last frame
            docker logs "$dashboard" > "$BUILD/dashboard.txt" 2>/dev/null
        fi
        offset=$(stat -c %s "$EVENTS")
        case $kind in
            fail) cmd_recover "$victim" ;;
            pause) cmd_resume "$victim" ;;
            partition) cmd_heal "$victim" ;;
        esac
        rejoined=$(wait_event worker.joined "$victim" "$FAULT_TS" "$offset")
        wait_healthy "$victim"
        faults+=(--fault "$kind" "$detected" "$rejoined")
    done
    "${PYTHON:-$HERE/../.venv/bin/python}" -m cluster_sim.lab.cluster_bench report \
        --transports "$BUILD/events/bench-transports.json" "${faults[@]}" \
        --recording status_during_partition "$BUILD/status-during-partition.txt" \
        --recording dashboard "$BUILD/dashboard.txt" --events "$EVENTS" --since "$since" \
        --json "$BUILD/bench.json"
    if [ -n "$out" ]; then cp "$BUILD/bench.json" "$out" && say "saved $out"; fi
}

cmd_stop() {
    compose stop >/dev/null 2>&1 || true
    record cluster.stopped all
    say "stopped"
}

cmd_cleanup() {
    if [ -f "$HERE/docker-compose.yml" ]; then
        compose down --volumes --remove-orphans >/dev/null 2>&1 || true
    fi
    for image in "$BARE_IMAGE" "$NODE_IMAGE" "$BASE_IMAGE"; do
        docker image rm "$image" >/dev/null 2>&1 || true
    done
    # and any image of ours a rebuild or an interrupted build left untagged
    docker images -q --filter "label=$IMAGE_LABEL" | sort -u | xargs -r docker image rm -f >/dev/null 2>&1 || true
    rm -rf "$BUILD"
    say "removed the cluster's containers, network, images and build folder"
}

VERB="${1:-}"
[ -n "$VERB" ] || { usage; exit 2; }
shift
case "$VERB" in
    -h|--help|help) usage ;;
    build|start|status|logs|fail|recover|pause|resume|partition|heal|flaky|slow|fast|kill-agent|\
    start-agent|test|drill|bench|stop|cleanup|deploy|rotate|remove)
        help_for "${1:-}"
        if [ "${1:-}" = --dry-run ]; then
            case "$VERB" in
                partition|flaky|slow) DRY_RUN=1; shift ;;
                *) die "$VERB has no --dry-run (partition, flaky and slow have)" ;;
            esac
        fi
        "cmd_${VERB//-/_}" "$@" ;;
    *) die "unknown command '$VERB' (commands: build start status logs fail recover pause resume partition heal flaky slow fast kill-agent start-agent test drill bench stop cleanup deploy rotate remove)" ;;
esac
