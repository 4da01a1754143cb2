#!/usr/bin/env bash
# Installs what is missing, builds brigade with address and undefined-behaviour sanitizers (-Werror),
# runs every test suite, and ends with the combined CUnit summary and a line "N passed, N failed"
# computed from the run. Exit status 0 only when every test passed.
#   BRG_CHECK_BUILD=dir   build directory (default build-check)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
. tools/deps.sh
brg_install_deps || { echo "check: installing the build dependencies failed" >&2; exit 1; }

build=${BRG_CHECK_BUILD:-build-check}
opts=(-Dwerror=true -Db_sanitize=address,undefined -Dbuildtype=debugoptimized)
if [ -d "$build/meson-private" ]; then
    meson setup --reconfigure "$build" "${opts[@]}" >/dev/null || exit 1
else
    meson setup "$build" "${opts[@]}" >/dev/null || exit 1
fi
ninja -C "$build" || { echo "check: build failed" >&2; exit 1; }

meson test -C "$build" --print-errorlogs --num-processes "$(nproc)" --timeout-multiplier 3
meson_rc=$?

# Sum the CUnit summaries of every suite from meson's log; a suite that ended without one (a crash, a
# timeout) counts as one failed test, a skipped suite (no GPU) as skipped.
python3 - "$build/meson-logs/testlog.json" "$meson_rc" <<'PY'
import json, re, sys
rows = {"suites": [0] * 5, "tests": [0] * 5, "asserts": [0] * 5}
passed = failed = skipped = 0
problems = []
with open(sys.argv[1]) as f:
    for line in f:
        t = json.loads(line)
        out = t.get("stdout", "") or ""
        if t["result"] == "SKIP":
            skipped += 1
            continue
        found = {}
        for kind in rows:
            m = re.search(r"^\s*%s\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(\S+)\s*$" % kind, out, re.M)
            if m:
                found[kind] = [0 if v == "n/a" else int(v) for v in m.groups()]
        if "tests" not in found:
            failed += 1
            problems.append("%s: %s without a CUnit summary" % (t["name"], t["result"]))
            continue
        for kind, vals in found.items():
            rows[kind] = [a + b for a, b in zip(rows[kind], vals)]
        passed += found["tests"][2]
        failed += found["tests"][3]
        if t["result"] not in ("OK", "EXPECTEDFAIL") and found["tests"][3] == 0:
            failed += 1
            problems.append("%s: %s (exit %s) although CUnit counted no failure" % (t["name"], t["result"], t.get("returncode")))
print()
for p in problems:
    print("problem:", p)
print("Run Summary (all suites):  Type  Total    Ran Passed Failed Inactive")
for kind in ("suites", "tests", "asserts"):
    v = rows[kind]
    print("%26s %6d %6d %6s %6d %8s" % (kind, v[0], v[1], "n/a" if kind == "suites" else v[2], v[3],
                                          "n/a" if kind == "asserts" else v[4]))
print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(0 if failed == 0 and int(sys.argv[2]) == 0 else 1)
PY
