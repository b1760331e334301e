#!/usr/bin/env bash
# Start a Ray worker node of this Slurm job on the current node and block until stopped.
#
# submit.sbatch runs it with one `srun` step on every node but the first, once the head answers.
# It needs the same environment as start-head.sh plus HPO_RAY_ADDRESS (the head's
# IP:port). CPUs and GPUs come from Slurm; on SIGTERM it stops exactly the Ray processes
# it started.
set -euo pipefail
HPO_REPO="${HPO_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# shellcheck source=slurm/ray-common.sh
source "$HPO_REPO/slurm/ray-common.sh"

# submit.sbatch starts every worker node in one srun step: each task writes its own log,
# worker-<Slurm node name>.log (srun's %N would give the host name, which need not be the node's).
if [[ -n "${HPO_JOB_DIR:-}" && -d "$HPO_JOB_DIR" ]]; then
    exec >>"$HPO_JOB_DIR/worker-${SLURMD_NODENAME:-$(hostname -s)}.log" 2>&1
    # A failure before Ray starts (ports, set-up) also tells the readiness check this node is out;
    # once Ray runs, hpo_run_ray_node's own exit handler does.
    trap 'echo $? >"$HPO_JOB_DIR/exited-${SLURMD_NODENAME:-$(hostname -s)}"' EXIT
fi
hpo_node_setup start-worker.sh
[[ -n "${HPO_RAY_ADDRESS:-}" ]] || hpo_die "start-worker.sh: HPO_RAY_ADDRESS (the head's IP:port) is not set"

# The worker's own ports (dashboard agent, worker-port range) are local to this node: it picks a
# free block here, starting from the head's, checked on every address of the node.
hpo_pick_ports worker ""

hpo_log "worker: $HPO_NUM_CPUS CPUs, $HPO_NUM_GPUS GPUs, joining $HPO_RAY_ADDRESS"
hpo_run_ray_node worker \
    --address="$HPO_RAY_ADDRESS" \
    --dashboard-agent-listen-port="$HPO_WORKER_AGENT_PORT" \
    --min-worker-port="$HPO_NODE_MIN_WORKER_PORT" --max-worker-port="$HPO_NODE_MAX_WORKER_PORT" \
    --num-cpus="$HPO_NUM_CPUS" --num-gpus="$HPO_NUM_GPUS"
