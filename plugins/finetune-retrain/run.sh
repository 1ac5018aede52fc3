#!/usr/bin/env bash
# Decide whether to retrain (corpus growth, cooldown, a free machine, the planner's budget gate);
# if so, start the job in the background so the plugin run ends within its timeout.
set -euo pipefail
TOWN_ROOT="${GT_TOWN_ROOT:-$(gt town root)}"
result=success
decision=$(gt-finetune retrain --dry-run --town "$TOWN_ROOT") || result=failure
echo "$decision"
if [ "$result" = success ] && [[ "$decision" == retrain:* ]]; then
  log="$TOWN_ROOT/.gt-finetune/retrain.log"
  mkdir -p "$(dirname "$log")"
  nohup gt-finetune retrain --town "$TOWN_ROOT" >>"$log" 2>&1 &
  echo "retraining in the background (pid $!); log: $log"
fi
bd create "finetune-retrain: $result" -t chore --ephemeral \
  -l "type:plugin-run,plugin:finetune-retrain,result:$result" --silent || true
[ "$result" = success ]
