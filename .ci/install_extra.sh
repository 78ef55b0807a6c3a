#!/usr/bin/env bash
# install_extra.sh: packages the optional tests need beyond README.md's set-up command (Debian 12).
#
#   bash .ci/install_extra.sh
#
# slurm-wlm (slurmctld, slurmd, the client commands and slurm-wlm-basic-plugins, which holds srun's mpi/pmix
# and mpi/pmi2 plugins and task/affinity) and munge, for tests/e2e_slurm.sh, which starts its own
# single-node cluster; libpmix2 is the PMIx library that srun --mpi=pmix loads (Open MPI depends on it too).
# --no-install-recommends leaves out slurm-wlm-plugins (MySQL, HDF5, RRD, IPMI, ... plugins) that nothing
# here uses. python3-numpy runs the independent numpy check of tests/e2e_pipeline.sh; clang and
# libclang-rt-14-dev build the libFuzzer targets (tests/fuzz/). Idempotent: does nothing when the packages are installed. No daemon is started or enabled.
set -euo pipefail
packages=(slurm-wlm munge libpmix2 python3-numpy clang libclang-rt-14-dev)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_extra: ${packages[*]} already installed"
    exit 0
fi

sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
echo "install_extra: installing ${missing[*]}"
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
