#!/usr/bin/env bash
# On a machine with one NVIDIA GPU, in under ten minutes: the embedded demo twice (train.precision
# auto -> bf16 or fp16, and fp32) and the throughput benchmark on the GPU; then one table.
#
#   bash benchmarks/gpu_check.sh                 # uses .venv/bin/python (python3 quickstart.py test makes it)
#   PYTHON=python LADDER_CACHE=/path/to/models bash benchmarks/gpu_check.sh
#
# Offline machines: the demo's ladder needs its checkpoints; point LADDER_CACHE at a copy of
# ~/.cache/greenladder made where they were fetched (advise --fetch-models). Logs and reports go to
# $OUT (a temporary folder unless set). Each step has its own time limit, so the whole stays under
# ten minutes even when one step hangs; a step that fails shows as "failed" in the table.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-$(mktemp -d -t greenladder-gpu-XXXX)}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cache=()
[ -n "${LADDER_CACHE:-}" ] && cache=(--set "ladder.cache_dir=$LADDER_CACHE")

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no GPU (torch.cuda.is_available() is False); nothing to check." >&2
  exit 2
fi
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1 || true

for precision in auto fp32; do
  echo "[gpu_check] demo, train.precision=$precision" >&2
  timeout 210 "$PY" -m advisor.cli "${cache[@]}" --set "train.precision=$precision" --json \
    --out "$OUT/demo-$precision" > "$OUT/demo-$precision.json" 2> "$OUT/demo-$precision.log"
  echo $? > "$OUT/demo-$precision.rc"
done
echo "[gpu_check] throughput benchmark on the GPU (quick)" >&2
timeout 150 "$PY" benchmarks/throughput.py --device cuda --quick > "$OUT/throughput.log" 2>&1
echo $? > "$OUT/throughput.rc"

"$PY" - "$OUT" <<'PYEOF'
import json
import sys
from pathlib import Path

from scipy.stats import binomtest

out = Path(sys.argv[1])
head = ("check", "precision", "wall s", "result", "val accuracy [95% Wilson], n", "train PFLOPs", "GPU kWh", "exit")
rows = [head]


def failed(what, log, rc):
    rows.append((what, "-", "-", f"failed: see {log}", "-", "-", "-", rc))


for p in ("auto", "fp32"):
    rc = (out / f"demo-{p}.rc").read_text().strip()
    try:
        r = json.loads((out / f"demo-{p}.json").read_text())
    except (OSError, ValueError):
        failed(f"demo ({p})", out / f"demo-{p}.log", rc)
        continue
    rec = r.get("recommendation") or {}
    trained = [x for x in r.get("runs", []) if "precision" in x.get("details", {})]
    used = trained[0]["details"]["precision"] if trained else "-"
    n = r["dataset"]["splits"]["validation"]["rows"]
    acc = rec.get("metrics", {}).get("accuracy")
    acc_s = "-"
    if acc is not None:
        ci = binomtest(round(acc * n), n).proportion_ci(method="wilson")
        acc_s = f"{acc:.3f} [{ci.low:.3f}, {ci.high:.3f}], n={n}"
    tc = r.get("total_cost", {})
    rows.append(
        (f"demo ({p})", used, f"{tc.get('wall_s', 0):.0f}", rec.get("run_id", "none met the criteria"), acc_s,
         f"{tc.get('train_flops', 0) / 1e15:.3f}", f"{tc.get('energy_gpu_kwh', 0):.5f}", rc)
    )
rc = (out / "throughput.rc").read_text().strip()
found = sorted(Path("benchmarks/results").glob("throughput-*-quick-cuda.json"), key=lambda f: f.stat().st_mtime)
bench = json.loads(found[-1].read_text())["results"]["rows"] if found and rc == "0" else []
for x in bench:
    rows.append(
        (f"throughput: {x['method']}", x["precision"], f"{x['median_wall_s']:.1f}",
         f"{x['tokens_per_s']:.0f} real tokens/s, MFU {x['mfu']:.2f}", "-", "-", "-", rc)
    )
if not bench:
    failed("throughput", out / "throughput.log", rc)
gpu = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").exists() else "unknown GPU"
print(f"GPU: {gpu}")
widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
for k, row in enumerate(rows):
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    if k == 0:
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
print(f"logs and reports: {out}")
PYEOF
