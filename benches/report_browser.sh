#!/usr/bin/env bash
# The report in a real browser, and the README's screenshot of it: a 200k
# bench on loopback (about 25 s here), its JSON drawn by `tcpmax report`,
# the page opened from file:// in headless Chromium, which must print
# nothing to its console; the screenshot goes to docs/report.png (or $1).
# Needs Chromium: apt-get install chromium. Loopback only; the run stops by
# itself.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-docs/report.png}")
if [ ! -x /usr/bin/chromium ] && [ -z "${TCPMAX_CHROMIUM:-}" ]; then
  echo "no Chromium at /usr/bin/chromium: apt-get install chromium (or set TCPMAX_CHROMIUM)" >&2
  exit 1
fi
cargo build --release --bins
mkdir -p target/report-browser
json=target/report-browser/bench-200k.json
target/release/tcpmax bench -c 200k --hold 10s --json "$json" >/dev/null
TCPMAX_REPORT_JSON="$json" TCPMAX_REPORT_SCREENSHOT="$out" \
  cargo test --release --test report_browser -- --nocapture
echo "screenshot: $out"
