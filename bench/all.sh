#!/usr/bin/env bash
# Every benchmark, one after the other: extraction (run.sh), MariaDB's partition curve and
# CPU split (mariadb.sh), partitions across agents (agents.sh), end to end (pipeline.sh)
# and the controller at 100 agents (scale.sh). Each prints its table and writes its JSON under
# bench/out/.
set -euo pipefail
cd "$(dirname "$0")"
bash run.sh
bash mariadb.sh
bash agents.sh
bash pipeline.sh
bash scale.sh
