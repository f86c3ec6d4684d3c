// A SQLite VFS that hands the writes one commit makes to a WAL file to the file system as one
// write instead of two per page (SQLite writes each frame's 24-byte header and its page apart).
//
// Contract: only for connections with `PRAGMA synchronous = FULL` (or EXTRA) in WAL mode. There,
// SQLite syncs the WAL after a commit's frames and before it publishes them in the wal-index, and
// this VFS writes everything it holds when asked to sync, to read, to tell the size, to truncate,
// to close or to control the file, or when a write does not follow the ones it holds. So no
// reader can see a frame that is not in the file yet, and every error reaches SQLite from the
// call that made the data leave (usually the sync, where SQLite fails the commit). With NORMAL
// or OFF, frames are published without a sync: such connections must not use this VFS. A WAL
// file whose device does not promise power-safe overwrite (SQLite then pads and syncs in the
// middle of a commit) and any other file go straight to the VFS underneath.
//
// Thread safety: registration is synchronized; a file is used by one connection at a time, as
// SQLite uses files.
#pragma once

namespace saga::sqlite_detail {

// The name to pass to sqlite3_open_v2 for a VFS like this over the process's current default VFS
// (registered on first use for each default VFS, never as the default), or nullptr if it could
// not be registered (out of memory); nullptr opens with the default VFS.
const char* wal_coalescing_vfs() noexcept;

// How many writes the files opened through such VFSs handed to the VFS underneath, and how many
// they took from SQLite, for tests and benchmarks.
struct WalWriteCounts {
  long long taken = 0;
  long long written = 0;
};
WalWriteCounts wal_write_counts() noexcept;

}  // namespace saga::sqlite_detail
