#!/usr/bin/env bash
# Analyze the bundled sample capture: ./scripts/demo.sh [OUTDIR]
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
OUT="${1:-$ROOT/out/sample}"
"$VENV/bin/dicom-analyzer" analyze "$ROOT/captures/dicom_lab.pcap" -o "$OUT" --report
echo "tables written to $OUT:"
ls -l "$OUT"
"$PY" - "$OUT" <<'PY'
import sys
import polars as pl
pl.Config.set_tbl_cols(12)
pl.Config.set_tbl_width_chars(160)
conn = pl.read_parquet(f"{sys.argv[1]}/conn.parquet")
print(conn.select("orig_h", "orig_p", "resp_h", "resp_p", "service", "conn_state", "history",
                  "orig_bytes", "resp_bytes", "missed_bytes"))
pl.Config.set_fmt_str_lengths(70)
findings = pl.read_parquet(f"{sys.argv[1]}/finding.parquet")
print(findings.select("severity", "rule", "calling_ae", "called_ae", "detail"))
PY
echo
echo "open $OUT/report.html in a browser: the same findings, the asset inventory and the plots"
