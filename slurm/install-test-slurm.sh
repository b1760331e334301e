#!/usr/bin/env bash
# Install what tests/test_slurm.py needs to run a real, throw-away Slurm on this machine:
# Debian's slurmctld, slurmd, slurm-client and munge. Idempotent and quiet; run as root
# (as .ci/run does). The packages' own services are not used: the test fixture starts its
# own munged/slurmctld/slurmd with a private configuration in a temporary directory.
set -euo pipefail
needed=()
for bin in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/sbin/munged; do
    [[ -x "$bin" ]] || needed=(slurmctld slurmd slurm-client munge)
done
if (( ${#needed[@]} == 0 )); then
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    echo "install-test-slurm.sh: need root to install ${needed[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
# The packages start their services where an init system runs; the tests do not use them.
for svc in slurmctld slurmd munge; do
    command -v systemctl >/dev/null && systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
echo "install-test-slurm.sh: installed ${needed[*]}"
