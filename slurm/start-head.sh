#!/usr/bin/env bash
# Start this Slurm job's Ray head on the current node and block until stopped.
#
# submit.sbatch runs it with `srun` on the job's first node. It can also be used from your
# own batch script: it needs SLURM_JOB_ID, RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (a
# 0600 token file), and HPO_JOB_DIR (the job's log folder) in its environment. CPUs and
# GPUs come from Slurm (SLURM_CPUS_PER_TASK, SLURM_GPUS_ON_NODE / CUDA_VISIBLE_DEVICES),
# ports from the job id (see ray-common.sh). On SIGTERM (scancel, or submit.sbatch's
# cleanup) it stops exactly the Ray processes it started.
set -euo pipefail
HPO_REPO="${HPO_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# shellcheck source=slurm/ray-common.sh
source "$HPO_REPO/slurm/ray-common.sh"

hpo_node_setup start-head.sh

hpo_choose_head_ip  # a wrong HPO_RAY_HEAD_IP or HPO_RAY_IFACE is reported here, not as a port in use
ip="$HPO_RAY_HEAD_IP"

# A port held by someone else (another job, a stale Ray) would otherwise surface as an
# obscure Ray error or a hang; say which port and how to move this job's ports.
hpo_check_ports head "$ip"  # submit.sbatch picked a free block (hpo_pick_ports); checked again here

dashboard=(--include-dashboard=false)
if [[ "${HPO_RAY_DASHBOARD:-0}" == 1 ]]; then
    dashboard=(--include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$HPO_DASHBOARD_PORT")
fi

hpo_log "head: $HPO_NUM_CPUS CPUs, $HPO_NUM_GPUS GPUs, GCS at $ip:$HPO_GCS_PORT"
hpo_run_ray_node head \
    --head --node-ip-address="$ip" --port="$HPO_GCS_PORT" \
    --ray-client-server-port="$HPO_CLIENT_PORT" "${dashboard[@]}" \
    --dashboard-agent-listen-port="$HPO_HEAD_AGENT_PORT" \
    --min-worker-port="$HPO_HEAD_MIN_WORKER_PORT" --max-worker-port="$HPO_HEAD_MAX_WORKER_PORT" \
    --num-cpus="$HPO_NUM_CPUS" --num-gpus="$HPO_NUM_GPUS"
