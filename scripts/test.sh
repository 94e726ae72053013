#!/usr/bin/env bash
# Run the whole test suite: ./scripts/test.sh [PYTEST ARGS]
# Installs what the tests need when it is missing: tshark, mergecap (Wireshark's oracle),
# tcpdump and dumpcap, DCMTK, Chromium (renders the HTML report); then lint, type checks and pytest.
set -euo pipefail
export DICOM_ANALYZER_EXTRAS=test
source "$(dirname "$0")/bootstrap.sh"
need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v mergecap >/dev/null 2>&1 || need+=(wireshark-common)
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
[ -x /usr/bin/storescu ] || need+=(dcmtk)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
command -v setcap >/dev/null 2>&1 || need+=(libcap2-bin)
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
cd "$ROOT"
echo "== ruff"
"$VENV/bin/ruff" check analyzer tests captures benchmarks
echo "== mypy --strict analyzer"
"$VENV/bin/mypy"
echo "== pytest"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
