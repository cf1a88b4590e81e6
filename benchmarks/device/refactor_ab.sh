#!/usr/bin/env bash
# Behaviour unchanged across a refactor, in one GPU job: the same `train` command from OLD's package and from this
# checkout, alternating, ROUNDS times, in fp16 (bit-reproducible on the compiled path; bf16 is not:
# results/refactor_ab_minilm.json), then whether each run wrote the same test predictions as the first old one.
#   here, before the call (the device has no .git):  git archive OLD qlora_helpers | tar -x -C .carry/ab_old
#   there:  source .carry/setup.sh && OLD=<commit> OUT=$OUT [ROUNDS=2] [EXTRA="--max-steps 50"] bash benchmarks/device/refactor_ab.sh
# Writes OUT/refactor_ab.json (commits, command, each run's test scores and seconds, and the comparison).
set -uo pipefail
root=$PWD; old_src=$(cd "${OLD_SRC:-.carry/ab_old}" 2>/dev/null && pwd); out=${OUT:-outputs/ab}; work=$(mktemp -d)
[ -d "$old_src/qlora_helpers" ] || { echo "error: no ${OLD_SRC:-.carry/ab_old}/qlora_helpers (git archive OLD qlora_helpers)" >&2; exit 2; }
mkdir -p "$out"; out=$(cd "$out" && pwd)
args=(train --profile full --model "$QLORA_MINILM" --dataset "$QLORA_IMDB" --label-names negative positive
  --compute-dtype float16 --report-to none ${EXTRA:-})
for round in $(seq "${ROUNDS:-2}"); do
  for side in old new; do
    src=$root; [ "$side" = old ] && src=$old_src
    start=$(date +%s%N)
    # python -m puts the working directory first on sys.path: each side runs from its own package's folder
    (cd "$src" && python3 -m qlora_helpers "${args[@]}" --output-dir "$work/$side$round" \
      --plots-dir "$work/plots-$side$round" > "$work/$side$round.log" 2>&1)
    code=$?
    echo "$side$round exit $code $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee -a "$work/seconds.txt"
    [ "$code" = 0 ] || tail -n 3 "$work/$side$round.log"
  done
done
python3 - "$work" "$out/refactor_ab.json" "${OLD:-unknown}" "${BENCH_COMMIT:-unknown}" "${args[*]}" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
work, target, old, new, command = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]
seconds = {line.split()[0]: int(line.split()[3]) / 1000 for line in (work / "seconds.txt").read_text().splitlines()}
runs, reference = [], None
for name in seconds:
    metrics = work / name / "metrics.json"
    m = json.loads(metrics.read_text()) if metrics.is_file() else {}
    predictions = work / name / "test_predictions.csv"
    table = pd.read_csv(predictions) if predictions.is_file() else None
    reference = table if reference is None else reference
    comparable = table is not None and len(table) == len(reference)
    same = float((table["predicted"] == reference["predicted"]).mean()) if comparable else None
    equal_probabilities = bool(table["probability"].equals(reference["probability"])) if comparable else None
    runs.append({"run": name, "seconds": round(seconds[name], 1), "test_accuracy": m.get("test_accuracy"),
                 "test_f1_macro": m.get("test_f1_macro"), "optimizer_steps": m.get("optimizer_steps"),
                 "device": m.get("device"), "same_predictions_as_first_old_run": same,
                 "same_probabilities_as_first_old_run": equal_probabilities})
result = {"question": "does the refactor train and score as the old package does, same seed, fp16, one GPU job?",
          "commits": {"old": old, "new": new}, "command": "qlora-bert " + command, "runs": runs}
target.write_text(json.dumps(result, indent=2)); print(json.dumps(runs, indent=1))
PY
