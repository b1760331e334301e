# shellcheck shell=bash disable=SC2034  # sourced: the variables set here are used by the callers
# Shared settings for submit.sbatch, start-head.sh and start-worker.sh (sourced, not run).
#
# Everything here is derived from Slurm's environment and a few optional HPO_* variables;
# nothing counts nodes, CPUs or GPUs by hand.
#
#   HPO_REPO               the suite's checkout (default: the folder above this file)
#   HPO_VENV               virtual environment to use (default: $VIRTUAL_ENV, else $HPO_REPO/.venv)
#   HPO_SLURM_LOG_ROOT     where per-job folders go (default: $SLURM_SUBMIT_DIR/slurm-logs);
#                          must be on a file system every node of the job sees
#   HPO_RAY_TMPDIR         node-local folder under which each job makes its private (0700) temp dir
#                          for Ray's sockets and session files (default: /tmp)
#   HPO_RAY_PORT_BASE      first port of the per-job port blocks (default 20000)
#   HPO_RAY_PORT_BLOCK     ports per job (default 500)
#   HPO_RAY_PORT_SLOTS     number of blocks; job J uses block J mod SLOTS (default 25, so the
#                          ports stay in 20000-32499, below Linux's ephemeral range)
#   HPO_RAY_HEAD_IP        address the head binds to (default: from HPO_RAY_IFACE, else this node's routable IPv4)
#   HPO_RAY_IFACE          network interface whose IPv4 address the head uses (e.g. ib0 for InfiniBand;
#                          default: the interface of the default route, often the management Ethernet)
#   HPO_RAY_START_ARGS     extra arguments for every `ray start` (e.g. --object-store-memory=...; a
#                          --memory or --object-store-memory here replaces the sizing from the allocation)
#   HPO_RAY_OBJECT_STORE_FRACTION  share of the node's allocated memory for Ray's object store (default 0.3,
#                          Ray's own default share of a whole node), at most 90 % of /dev/shm's free space
#   HPO_NOFILE             open-file limit each Ray node asks for (default 65536, Ray's advice at scale)
#   HPO_RAY_HEAD_START_ARGS / HPO_RAY_WORKER_START_ARGS   extra arguments for the head / workers only

hpo_die() {
    echo "ERROR [$(date +%H:%M:%S) ${SLURMD_NODENAME:-$(hostname)}] $*" >&2
    exit 1
}

hpo_log() {
    echo "[$(date +%H:%M:%S) ${SLURMD_NODENAME:-$(hostname)}] $*"
}

hpo_require_job() {
    [[ -n "${SLURM_JOB_ID:-}" ]] || hpo_die "SLURM_JOB_ID is not set: run this inside a Slurm job (sbatch slurm/submit.sbatch ...)"
}

# Python of the chosen virtual environment; `ray` is run through it (python -m), so a moved
# venv whose bin/ray shebang points elsewhere still works.
hpo_find_python() {
    local venv="${HPO_VENV:-${VIRTUAL_ENV:-${HPO_REPO}/.venv}}"
    HPO_PYTHON="$venv/bin/python"
    if ! { [[ -x "$HPO_PYTHON" ]] && "$HPO_PYTHON" -c "import ray" 2>/dev/null; }; then
        hpo_die "no python with ray in '$venv' (set HPO_VENV to the virtual environment with the suite installed)"
    fi
    HPO_RAY=("$HPO_PYTHON" -m ray.scripts.scripts)
    export PATH="$venv/bin:$PATH"
    # Trials that ask for no GPU get an empty CUDA_VISIBLE_DEVICES (Ray 2.60 left them the node's GPUs,
    # ray issue 54868); trainables/device.py also decides from Ray's accelerator ids.
    export RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="${RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO:-1}"
}

# Ports of this job: one block per job (job id mod slots), so that two jobs sharing a node
# do not collide. Inside the block: GCS, Ray client server, dashboard, dashboard agents, then
# two disjoint worker-port ranges, one for the head node and one for worker nodes (so even a
# head and a worker of the same job on one host do not collide). Ports Ray picks itself when
# given 0 (node manager, object manager, metrics, agent gRPC, runtime env agent) are left to
# the kernel: those can never collide.
hpo_ports() {
    local base="${HPO_RAY_PORT_BASE:-20000}" block="${HPO_RAY_PORT_BLOCK:-500}" slots="${HPO_RAY_PORT_SLOTS:-25}"
    (( block >= 60 )) || hpo_die "HPO_RAY_PORT_BLOCK must be at least 60 (got $block)"
    local slot="${HPO_RAY_PORT_SLOT:-$(( SLURM_JOB_ID % slots ))}"
    local first=$(( base + slot * block ))
    local half=$(( (block - 10) / 2 ))
    HPO_GCS_PORT=$first
    HPO_CLIENT_PORT=$(( first + 1 ))
    HPO_DASHBOARD_PORT=$(( first + 2 ))
    HPO_HEAD_AGENT_PORT=$(( first + 3 ))
    HPO_WORKER_AGENT_PORT=$(( first + 4 ))
    HPO_HEAD_MIN_WORKER_PORT=$(( first + 10 ))
    HPO_HEAD_MAX_WORKER_PORT=$(( first + 10 + half - 1 ))
    HPO_NODE_MIN_WORKER_PORT=$(( first + 10 + half ))
    HPO_NODE_MAX_WORKER_PORT=$(( first + block - 1 ))
}

# Whether this node can bind PORTS (fixed ports Ray must bind) and most of the port range
# MIN-MAX (Ray's worker ports): prints "fixed P" (P is taken), "range N" (N of the range are
# taken: more than half), or "ok" and the taken ports of the range (Ray skips those).
# Usage: hpo_port_verdict IP MIN MAX PORT...; IP "" checks every address of the node.
hpo_port_verdict() {
    "$HPO_PYTHON" - "$@" <<'EOF'
import socket, sys

ip, lo, hi, fixed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(p) for p in sys.argv[4:]]

def free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()

taken = [p for p in fixed if not free(p)]
busy = [p for p in range(lo, hi + 1) if not free(p)]
if taken:
    print(f"fixed {taken[0]}")
elif len(busy) > (hi - lo + 1) // 2:
    print(f"range {len(busy)}")
else:
    print("ok " + " ".join(map(str, busy[:10])) + (" ..." if len(busy) > 10 else ""))
EOF
}

# The fixed ports and worker-port range ROLE (head or worker) binds, from hpo_ports: sets
# HPO_ROLE_PORTS (array) and HPO_ROLE_RANGE ("MIN MAX").
hpo_role_ports() {
    if [[ "$1" == head ]]; then
        HPO_ROLE_PORTS=("$HPO_GCS_PORT" "$HPO_CLIENT_PORT" "$HPO_HEAD_AGENT_PORT")
        [[ "${HPO_RAY_DASHBOARD:-0}" == 1 ]] && HPO_ROLE_PORTS+=("$HPO_DASHBOARD_PORT")
        HPO_ROLE_RANGE="$HPO_HEAD_MIN_WORKER_PORT $HPO_HEAD_MAX_WORKER_PORT"
    else
        HPO_ROLE_PORTS=("$HPO_WORKER_AGENT_PORT")
        HPO_ROLE_RANGE="$HPO_NODE_MIN_WORKER_PORT $HPO_NODE_MAX_WORKER_PORT"
    fi
}

hpo_port_failure() {  # ROLE IP VERDICT: the one line that says which port is taken and what to do
    local role="$1" where="${2:-every address} (${SLURMD_NODENAME:-$(hostname)})" verdict="$3" lo hi
    read -r lo hi <<<"$HPO_ROLE_RANGE"
    local move="Another job or a stale Ray process holds it; set HPO_RAY_PORT_BASE (now ${HPO_RAY_PORT_BASE:-20000}) to move this job's ports."
    case "$verdict" in
        fixed*) echo "$role: port ${verdict#fixed } on $where is already in use, so the Ray $role of job $SLURM_JOB_ID cannot start. $move" ;;
        range*) echo "$role: ${verdict#range } of the worker ports $lo-$hi on $where are already in use, so the Ray $role of job $SLURM_JOB_ID cannot start. $move" ;;
        *) echo "$role: could not check this job's ports on $where" ;;
    esac
}

# Die with one line naming the first fixed port of ROLE (on IP) that something else holds, or
# a worker-port range with fewer than half free; log the worker ports Ray will skip.
# Usage: hpo_check_ports ROLE IP (after hpo_ports).
hpo_check_ports() {
    local role="$1" ip="$2" verdict lo hi
    hpo_role_ports "$role"
    read -r lo hi <<<"$HPO_ROLE_RANGE"
    verdict="$(hpo_port_verdict "$ip" "$lo" "$hi" "${HPO_ROLE_PORTS[@]}")"
    case "$verdict" in
        "ok ") ;;
        ok*) hpo_log "$role: worker ports in use on ${ip:-every address} (${SLURMD_NODENAME:-$(hostname)}), Ray skips them: ${verdict#ok }" ;;
        *) hpo_die "$(hpo_port_failure "$role" "$ip" "$verdict")" ;;
    esac
}

# Pick this job's port block for ROLE on this node: the job's own block (job id mod slots), or
# the next one whose ports are free when another job holds it (two jobs on a node share a block
# by job id with probability 1/slots). Exports HPO_RAY_PORT_SLOT (the srun steps inherit it)
# and sets the ports (hpo_ports). Dies naming the taken port when every block is taken.
# Usage: hpo_pick_ports ROLE IP
hpo_pick_ports() {
    local role="$1" ip="$2" slots="${HPO_RAY_PORT_SLOTS:-25}" own i verdict first_verdict="" lo hi
    own=$(( ${HPO_RAY_PORT_SLOT:-$(( SLURM_JOB_ID % slots ))} % slots ))
    for (( i = 0; i < slots; i++ )); do
        HPO_RAY_PORT_SLOT=$(( (own + i) % slots ))
        hpo_ports
        hpo_role_ports "$role"
        read -r lo hi <<<"$HPO_ROLE_RANGE"
        verdict="$(hpo_port_verdict "$ip" "$lo" "$hi" "${HPO_ROLE_PORTS[@]}")"
        if [[ "$verdict" == ok* ]]; then
            export HPO_RAY_PORT_SLOT
            (( i == 0 )) || hpo_log "$role: port block $own is taken on this node ($(hpo_port_failure "$role" "$ip" "$first_verdict" | cut -d, -f1)); using block $HPO_RAY_PORT_SLOT"
            return 0
        fi
        [[ -n "$first_verdict" ]] || first_verdict="$verdict"
    done
    HPO_RAY_PORT_SLOT="$own"
    hpo_ports
    hpo_role_ports "$role"
    hpo_die "$(hpo_port_failure "$role" "$ip" "$first_verdict") (All $slots port blocks of HPO_RAY_PORT_SLOTS are taken on this node.)"
}

# A routable IPv4 address of this node: the source address of the default route.
hpo_node_ip() {
    "$HPO_PYTHON" - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.connect(("10.255.255.255", 1))  # no packet is sent; this only asks for the route
    ip = s.getsockname()[0]
except OSError:  # no default route: what the host name resolves to
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        ip = "127.0.0.1"
print(ip)
EOF
}

# Set HPO_RAY_HEAD_IP, the address the Ray head binds to, or die with one line saying why:
# HPO_RAY_HEAD_IP as given (checked to be an address of this node), else the first IPv4 address
# of interface HPO_RAY_IFACE, else hpo_node_ip. Not a $(...) function, so hpo_die ends the script.
hpo_choose_head_ip() {
    if [[ -z "${HPO_RAY_HEAD_IP:-}" && -n "${HPO_RAY_IFACE:-}" ]]; then
        local addrs
        addrs="$(ip -o -4 addr show dev "$HPO_RAY_IFACE" 2>/dev/null)" \
            || hpo_die "HPO_RAY_IFACE=$HPO_RAY_IFACE: no such network interface on this node (it has: $(ip -o link show 2>/dev/null | awk -F': ' '{printf "%s ", $2}'))"
        HPO_RAY_HEAD_IP="$(awk '{split($4, a, "/"); print a[1]; exit}' <<<"$addrs")"
        [[ -n "$HPO_RAY_HEAD_IP" ]] || hpo_die "HPO_RAY_IFACE=$HPO_RAY_IFACE has no IPv4 address on this node"
    elif [[ -z "${HPO_RAY_HEAD_IP:-}" ]]; then
        HPO_RAY_HEAD_IP="$(hpo_node_ip)"
    elif ! "$HPO_PYTHON" -c 'import socket, sys
socket.socket().bind((sys.argv[1], 0))' "$HPO_RAY_HEAD_IP" 2>/dev/null; then
        # Binding to port 0 fails only when the address is not this node's (a port in use cannot be the cause).
        hpo_die "HPO_RAY_HEAD_IP=$HPO_RAY_HEAD_IP is not an IPv4 address of this node ($(hostname)); its addresses: $(ip -o -4 addr show 2>/dev/null | awk '{split($4, a, "/"); printf "%s (%s) ", a[1], $2}')"
    fi
    export HPO_RAY_HEAD_IP
}

# CPUs and GPUs Slurm gave this task on this node.
hpo_node_resources() {
    HPO_NUM_CPUS="${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}"
    if [[ -n "${SLURM_GPUS_ON_NODE:-}" ]]; then
        HPO_NUM_GPUS="$SLURM_GPUS_ON_NODE"
    elif [[ -n "${CUDA_VISIBLE_DEVICES:-}" && "${CUDA_VISIBLE_DEVICES}" != "NoDevFiles" ]]; then
        HPO_NUM_GPUS=$(awk -F, '{print NF}' <<<"$CUDA_VISIBLE_DEVICES")
    else
        HPO_NUM_GPUS=0
    fi
}

# Bytes of memory the job has on this node: SLURM_MEM_PER_NODE (MB), else SLURM_MEM_PER_CPU (MB)
# times this node's CPUs; nothing when Slurm gives no figure (no memory accounting, or --mem=0).
hpo_job_memory_bytes() {
    local mb=""
    if [[ "${SLURM_MEM_PER_NODE:-}" =~ ^[0-9]+$ ]] && (( SLURM_MEM_PER_NODE > 0 )); then
        mb="$SLURM_MEM_PER_NODE"
    elif [[ "${SLURM_MEM_PER_CPU:-}" =~ ^[0-9]+$ ]] && (( SLURM_MEM_PER_CPU > 0 )); then
        mb=$(( SLURM_MEM_PER_CPU * ${HPO_NUM_CPUS:-${SLURM_CPUS_ON_NODE:-1}} ))
    fi
    [[ -n "$mb" ]] && echo $(( mb * 1024 * 1024 ))
    return 0
}

# Ray's memory settings for TOTAL bytes of the job's memory and SHM_FREE bytes free in /dev/shm:
# "--memory=M --object-store-memory=S" with S = HPO_RAY_OBJECT_STORE_FRACTION (0.3) of TOTAL, at
# most 90 % of SHM_FREE (the object store lives in /dev/shm), and M = TOTAL - S. Inside a job's
# cgroup Ray sees the whole node and would size both from the node's RAM: its object store could
# then outgrow the job's memory, and a cgroup OOM kill would take the raylet with it. Nothing
# when S would be under Ray's 75 MiB minimum. Usage: hpo_ray_memory_split TOTAL SHM_FREE
hpo_ray_memory_split() {
    local total="$1" shm="$2" store
    store="$(awk -v t="$total" -v f="${HPO_RAY_OBJECT_STORE_FRACTION:-0.3}" -v s="$shm" \
        'BEGIN { x = t * f; if (s > 0 && x > 0.9 * s) x = 0.9 * s; printf "%.0f", x - 0.5 }')"
    (( store >= 75 * 1024 * 1024 && store < total )) || return 0
    echo "--memory=$(( total - store )) --object-store-memory=$store"
}

# The memory arguments of this node's `ray start` (hpo_ray_memory_split of the job's memory and
# /dev/shm's free space); nothing when the job has no memory figure or HPO_RAY_START_ARGS (or the
# head's / workers' own) already sets --memory or --object-store-memory.
hpo_ray_memory_args() {
    local given=" ${HPO_RAY_START_ARGS:-} ${HPO_RAY_HEAD_START_ARGS:-} ${HPO_RAY_WORKER_START_ARGS:-} " total shm
    [[ "$given" == *" --memory"* || "$given" == *" --object-store-memory"* ]] && return 0
    total="$(hpo_job_memory_bytes)"
    [[ -n "$total" ]] || return 0
    shm="$(df -P -B1 /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')"
    hpo_ray_memory_split "$total" "${shm:-0}"
}

# Raise this shell's soft open-file limit to HPO_NOFILE (default 65536, what Ray asks for at
# scale: every worker, actor and peer node holds sockets), or to the hard limit where that is
# lower, with a line saying so. Processes started from here (ray start, the driver) inherit it.
hpo_raise_open_files() {
    local want="${HPO_NOFILE:-65536}" soft hard
    soft="$(ulimit -Sn)"
    hard="$(ulimit -Hn)"
    [[ "$soft" == unlimited ]] && return 0
    (( soft >= want )) && return 0
    if [[ "$hard" == unlimited ]] || (( hard >= want )); then
        ulimit -Sn "$want"
    else
        ulimit -Sn "$hard"
        hpo_log "open-file limit raised to the hard limit $hard only, below the $want Ray asks for at scale (ask the admins to raise it)"
    fi
}

# What start-head.sh and start-worker.sh (SCRIPT: the one calling) both need first: a Slurm
# job, the venv's python, the job's ports, this node's CPUs and GPUs (recorded for the readiness
# check) and token authentication.
hpo_node_setup() {
    local script="$1"
    hpo_require_job
    hpo_find_python
    hpo_ports
    hpo_node_resources
    hpo_record_gpus  # this node's own GPU count, for the readiness check (Slurm may spread --gpus unevenly)
    [[ "${RAY_AUTH_MODE:-}" == token && -s "${RAY_AUTH_TOKEN_PATH:-}" ]] \
        || hpo_die "$script: token authentication is not set up (RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=<0600 token file> are required)"
}

# Write this node's GPU count (from its own Slurm step) to $HPO_JOB_DIR/gpus-<node>, where
# wait_for_ray.py nodes --gpus-dir reads what each node should join with.
hpo_record_gpus() {
    [[ -n "${HPO_JOB_DIR:-}" && -d "$HPO_JOB_DIR" ]] || return 0
    echo "$HPO_NUM_GPUS" >"$HPO_JOB_DIR/gpus-${SLURMD_NODENAME:-$(hostname -s)}"
}

# A fresh private folder of this job on this node (mktemp -d: a new name nobody could have
# created before, mode 0700), which holds Ray's temp dir ($dir/r). Ray makes its own temp dir
# and sockets/ mode 777, so only this private parent keeps other users of a shared node out of
# Ray's sockets, logs and session files. Its name starts with hpo-ray-<job id>-<node>:
# wait_for_ray.py reads it back from the GCS to tell which Slurm node a Ray node is.
hpo_make_private_tmpdir() {
    local root="${HPO_RAY_TMPDIR:-/tmp}" dir
    dir="$(mktemp -d "$root/hpo-ray-${SLURM_JOB_ID}-${SLURMD_NODENAME:-$(hostname -s)}.XXXXXX")" \
        || hpo_die "cannot create a private temp dir under $root (HPO_RAY_TMPDIR)"
    # mktemp made it; check anyway that it is ours and private before Ray puts sockets in it.
    [[ -O "$dir" && "$(stat -c %a "$dir")" == 700 ]] \
        || hpo_die "temp dir $dir is not owned by $(id -un) with mode 0700: refusing to use it"
    # Unix socket paths are limited to 107 bytes; Ray's longest is
    # <temp>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store.
    local longest="$dir/r/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store"
    (( ${#longest} <= 107 )) \
        || { rmdir "$dir"; hpo_die "HPO_RAY_TMPDIR=$root is too long for Ray's socket paths (${#longest} > 107 bytes); choose a shorter node-local folder"; }
    echo "$dir"
}

# PIDs of all descendants of $1 (children first found, deepest last).
hpo_descendants() {
    local parent="$1" child
    for child in $(ps -o pid= --ppid "$parent" 2>/dev/null); do
        echo "$child"
        hpo_descendants "$child"
    done
}

# PIDs of processes whose environment holds HPO_RAY_TAG=$1 (catches any that escaped the tree).
hpo_tagged_pids() {
    local f
    grep -lzxF "HPO_RAY_TAG=$1" /proc/[0-9]*/environ 2>/dev/null | while read -r f; do
        f="${f#/proc/}"; echo "${f%/environ}"
    done
}

# Run `ray start ... --block` in the background, wait for it, and on exit or on a signal
# stop exactly the processes it started (never `ray stop`, which would also stop other
# jobs' Ray on a shared node), keep Ray's logs in the job folder and remove the temp dir.
# SIGUSR1 is how submit.sbatch asks for a stop: srun forwards it to the step's processes,
# whereas a SIGTERM sent to srun makes Slurm kill the step outright, before this cleanup.
hpo_run_ray_node() {
    local role="$1"; shift
    local tag="${SLURM_JOB_ID}:${role}:${SLURMD_NODENAME:-$(hostname -s)}"
    HPO_RAY_NODE_PRIVATE="$(hpo_make_private_tmpdir)"
    HPO_RAY_NODE_TMP="$HPO_RAY_NODE_PRIVATE/r"
    HPO_RAY_NODE_ROLE="$role"
    HPO_RAY_NODE_TAG="$tag"
    trap hpo_stop_ray_node EXIT
    trap 'hpo_log "$HPO_RAY_NODE_ROLE: stop requested"; exit 143' TERM INT HUP USR1
    local extra="${HPO_RAY_START_ARGS:-}"
    if [[ "$role" == head ]]; then extra+=" ${HPO_RAY_HEAD_START_ARGS:-}"; else extra+=" ${HPO_RAY_WORKER_START_ARGS:-}"; fi
    extra+=" $(hpo_ray_memory_args)"  # sized from the job's memory on this node unless given above
    hpo_raise_open_files
    local extra_args=()
    read -r -a extra_args <<<"$extra"  # split on blanks only, never glob-expanded
    hpo_log "$role: ray start $* ${extra_args[*]}"
    HPO_RAY_TAG="$tag" "${HPO_RAY[@]}" start "$@" "${extra_args[@]}" \
        --temp-dir="$HPO_RAY_NODE_TMP" --disable-usage-stats --block &
    HPO_RAY_START_PID=$!
    local rc=0
    wait "$HPO_RAY_START_PID" || rc=$?
    hpo_log "$role: ray start exited with status $rc"
    exit "$rc"
}

hpo_stop_ray_node() {
    local rc=$? pids ray_start i
    # A second stop request (scancel's SIGTERM and submit.sbatch's SIGUSR1 may both come)
    # must not cut the cleanup short; Slurm's SIGKILL after KillWait is the backstop.
    trap - EXIT
    trap '' TERM INT HUP USR1
    set +e  # best effort from here on: a failed kill or copy must not cut the cleanup short
    ray_start="$(hpo_tagged_pids "$HPO_RAY_NODE_TAG" | while read -r p; do
        [[ "$(ps -o args= -p "$p" 2>/dev/null)" == *" start "*--block* ]] && echo "$p"; done)"
    pids="$( { [[ -n "${HPO_RAY_START_PID:-}" ]] && hpo_descendants "$HPO_RAY_START_PID"
               hpo_tagged_pids "$HPO_RAY_NODE_TAG"; } | sort -un)"
    if [[ -n "$pids" ]]; then
        hpo_log "$HPO_RAY_NODE_ROLE: stopping $(wc -w <<<"$pids") Ray processes"
        # `ray start --block` would drain the node for up to 30 s on SIGTERM: nothing is
        # left to drain here, so kill it and stop its children directly.
        # shellcheck disable=SC2086
        [[ -n "$ray_start" ]] && kill -KILL $ray_start 2>/dev/null
        [[ -n "${HPO_RAY_START_PID:-}" ]] && wait "$HPO_RAY_START_PID" 2>/dev/null  # no "Killed" notice
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        for i in $(seq 1 $(( 2 * ${HPO_RAY_STOP_GRACE:-5} ))); do
            pids="$(for p in $pids; do kill -0 "$p" 2>/dev/null && echo "$p"; done; hpo_tagged_pids "$HPO_RAY_NODE_TAG")"
            [[ -z "$pids" ]] && break
            sleep 0.5
        done
        # shellcheck disable=SC2086
        [[ -n "$pids" ]] && { hpo_log "$HPO_RAY_NODE_ROLE: killing" $pids; kill -KILL $pids 2>/dev/null || true; }
    fi
    if [[ -n "${HPO_JOB_DIR:-}" && -d "$HPO_RAY_NODE_TMP/session_latest/logs" ]]; then
        local dest="$HPO_JOB_DIR/ray-logs/${HPO_RAY_NODE_ROLE}-${SLURMD_NODENAME:-$(hostname -s)}"
        mkdir -p "$dest" && cp -rL "$HPO_RAY_NODE_TMP/session_latest/logs/." "$dest/" 2>/dev/null || true
    fi
    rm -rf "$HPO_RAY_NODE_PRIVATE"
    # For the readiness check (wait_for_ray.py): this node's Ray start has ended (one srun step runs
    # every worker node, so the step's own exit does not say which node failed).
    [[ -n "${HPO_JOB_DIR:-}" && -d "$HPO_JOB_DIR" ]] && echo "$rc" >"$HPO_JOB_DIR/exited-${SLURMD_NODENAME:-$(hostname -s)}"
    hpo_log "$HPO_RAY_NODE_ROLE: stopped"
    exit "$rc"
}
