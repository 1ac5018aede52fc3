#!/usr/bin/env bash
# Incremental corpus snapshot of the town's beads, mail and events (read-only on the town).
set -euo pipefail
TOWN_ROOT="${GT_TOWN_ROOT:-$(gt town root)}"
result=success
gt-finetune corpus build --town "$TOWN_ROOT" --sources beads_sql,beads_jsonl,events || result=failure
bd create "finetune-harvest: $result" -t chore --ephemeral \
  -l "type:plugin-run,plugin:finetune-harvest,result:$result" --silent || true
[ "$result" = success ]
