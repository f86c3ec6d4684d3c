#!/usr/bin/env bash
# Which B-trees a commit of the orchestrator dirties: runs the order flow (participants not
# durable) with `order_orchestrator --batch N`, kills the orchestrator with SIGKILL so its WAL
# survives, then reads the WAL's frame headers and maps each frame's page to the table or index
# that owns it (SQLite's dbstat). Prints WAL frames (pages) per commit, per B-tree.
#
# Every dirtied page is written to the WAL (two pwrite calls) and fsynced at each commit, so at
# small batches this is where a commit's cost comes from; use it to judge a schema change.
# Needs python3 (its sqlite3 module must have dbstat, as Debian's has).
#
#   bench/wal_frames.sh [--samples build/default/samples] [--batch 1] [--orders 3000]
set -euo pipefail

samples=build/default/samples
batch=1
orders=3000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --samples) samples=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --orders) orders=$2; shift 2 ;;
    *) echo "usage: $0 [--samples DIR] [--batch N] [--orders N]" >&2; exit 2 ;;
  esac
done
samples=$(cd "$samples" && pwd)
work=$(mktemp -d /tmp/wal_frames.XXXXXX)
source "$(dirname "$0")/cluster.sh"
trap 'cluster_stop; rm -rf "$work"' EXIT

cluster_start "$work" off --batch "$batch"
cluster_drive "$work" 200 --orders "$orders"
kill -9 "$cluster_orchestrator"
wait "$cluster_orchestrator" 2>/dev/null || true

python3 - "$work/orchestrator.db" "$batch" <<'PYTHON'
import collections, shutil, sqlite3, struct, sys

db_path, batch = sys.argv[1], sys.argv[2]
wal = open(db_path + "-wal", "rb").read()
_, _, page_size, _, salt1, salt2, _, _ = struct.unpack(">8I", wal[:32])
# After a checkpoint SQLite rewinds the WAL and writes over it from the start: past the current
# generation's frames (the header's salts) lie whole commits of the previous one (other salts),
# the first of them cut by the rewind. Both are what the engine committed.
commits, current, offset, salts, skipping = [], [], 32, (salt1, salt2), False
while offset + 24 + page_size <= len(wal):
    page, size_after_commit, s1, s2, _, _ = struct.unpack(">6I", wal[offset:offset + 24])
    offset += 24 + page_size
    if (s1, s2) != salts:
        salts, current, skipping = (s1, s2), [], True
    if not skipping:
        current.append(page)
    if size_after_commit:
        if not skipping:
            commits.append(current)
        current, skipping = [], False
if not commits:
    sys.exit("no complete commit in the WAL")
copy = db_path + ".copy"
shutil.copy(db_path, copy)
shutil.copy(db_path + "-wal", copy + "-wal")
owner = dict(sqlite3.connect(copy).execute("SELECT pageno, name FROM dbstat"))
tally = collections.Counter()
for pages in commits:
    for page in pages:
        tally["(database header, page 1)" if page == 1 else owner.get(page, "(free)")] += 1
frames = sum(len(pages) for pages in commits)
print(f"--batch {batch}: {len(commits)} commits in the WAL, "
      f"{frames / len(commits):.2f} frames ({page_size}-byte pages) per commit")
for name, count in tally.most_common():
    print(f"  {name:32} {count / len(commits):5.2f}")
PYTHON
