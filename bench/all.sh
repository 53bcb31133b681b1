#!/usr/bin/env bash
# Every benchmark, one after the other: extraction (run.sh), MariaDB's partition curve and
# CPU split (mariadb.sh), table shapes against the native pipeline (shapes.sh), partitions
# across agents (agents.sh), end to end (pipeline.sh) and the controller at 100 agents
# (scale.sh). Each prints its table and writes its results (JSON; shapes.sh a TSV it
# appends to) under bench/out/.
set -euo pipefail
cd "$(dirname "$0")"
bash run.sh
bash mariadb.sh
bash shapes.sh
bash agents.sh
bash pipeline.sh
bash scale.sh
