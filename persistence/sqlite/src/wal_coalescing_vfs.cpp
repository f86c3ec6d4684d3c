#include "wal_coalescing_vfs.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace saga::sqlite_detail {
namespace {

// The most one write may carry: SQLite's unix VFS writes at most 0x1ffff bytes per call (it
// masks the length) and reports a longer write as a full disk. A commit's frames beyond this go
// out in more than one write.
constexpr std::size_t kMaxHeld = 0x1ffff;

std::atomic<long long> g_taken{0};
std::atomic<long long> g_written{0};

struct Held {
  std::vector<char> bytes;
  sqlite3_int64 offset = 0;  // where bytes[0] goes
};

struct WalFile {
  sqlite3_file base;  // first: SQLite sees this
  sqlite3_file* real;
  Held* held;  // nullptr: every call goes straight through
};

constexpr int kFileHeader = static_cast<int>((sizeof(WalFile) + 7) / 8 * 8);

WalFile* wal(sqlite3_file* file) {
  return reinterpret_cast<WalFile*>(file);
}
sqlite3_file* real(sqlite3_file* file) {
  return wal(file)->real;
}
const sqlite3_io_methods& real_methods(sqlite3_file* file) {
  return *real(file)->pMethods;
}

// Writes what is held, and holds nothing afterwards whatever happened: after a failed write
// SQLite writes those frames again or gives them up.
int release(sqlite3_file* file) {
  Held* held = wal(file)->held;
  if (held == nullptr || held->bytes.empty()) return SQLITE_OK;
  ++g_written;
  const int rc = real_methods(file).xWrite(real(file), held->bytes.data(),
                                           static_cast<int>(held->bytes.size()), held->offset);
  held->bytes.clear();
  return rc;
}

int write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  ++g_taken;
  Held* held = wal(file)->held;
  const auto size = static_cast<std::size_t>(amount);
  if (held != nullptr && size < kMaxHeld) {
    const bool follows = !held->bytes.empty() &&
                         offset == held->offset + static_cast<sqlite3_int64>(held->bytes.size()) &&
                         held->bytes.size() + size <= kMaxHeld;
    if (!follows) {
      if (int rc = release(file); rc != SQLITE_OK) return rc;
      held->offset = offset;
    }
    try {
      const char* bytes = static_cast<const char*>(data);
      held->bytes.insert(held->bytes.end(), bytes, bytes + size);
      return SQLITE_OK;
    } catch (const std::bad_alloc&) {
      if (int rc = release(file); rc != SQLITE_OK) return rc;
    }
  } else if (int rc = release(file); rc != SQLITE_OK) {
    return rc;
  }
  ++g_written;
  return real_methods(file).xWrite(real(file), data, amount, offset);
}

int close(sqlite3_file* file) {
  const int released = release(file);
  const int closed = real_methods(file).xClose(real(file));
  delete wal(file)->held;
  wal(file)->held = nullptr;
  return released != SQLITE_OK ? released : closed;
}

int read(sqlite3_file* file, void* data, int amount, sqlite3_int64 offset) {
  if (int rc = release(file); rc != SQLITE_OK) return rc;
  return real_methods(file).xRead(real(file), data, amount, offset);
}

int truncate(sqlite3_file* file, sqlite3_int64 size) {
  if (int rc = release(file); rc != SQLITE_OK) return rc;
  return real_methods(file).xTruncate(real(file), size);
}

int sync(sqlite3_file* file, int flags) {
  if (int rc = release(file); rc != SQLITE_OK) return rc;
  return real_methods(file).xSync(real(file), flags);
}

int file_size(sqlite3_file* file, sqlite3_int64* size) {
  if (int rc = release(file); rc != SQLITE_OK) return rc;
  return real_methods(file).xFileSize(real(file), size);
}

int file_control(sqlite3_file* file, int op, void* argument) {
  if (int rc = release(file); rc != SQLITE_OK) return rc;
  return real_methods(file).xFileControl(real(file), op, argument);
}

int fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** pointer) {
  *pointer = nullptr;
  if (int rc = release(file); rc != SQLITE_OK) return rc;
  return real_methods(file).xFetch(real(file), offset, amount, pointer);
}

sqlite3_io_methods methods_of_version(int version) {
  sqlite3_io_methods m{};
  m.iVersion = version;
  m.xClose = close;
  m.xRead = read;
  m.xWrite = write;
  m.xTruncate = truncate;
  m.xSync = sync;
  m.xFileSize = file_size;
  m.xLock = [](sqlite3_file* f, int level) { return real_methods(f).xLock(real(f), level); };
  m.xUnlock = [](sqlite3_file* f, int level) { return real_methods(f).xUnlock(real(f), level); };
  m.xCheckReservedLock = [](sqlite3_file* f, int* out) {
    return real_methods(f).xCheckReservedLock(real(f), out);
  };
  m.xFileControl = file_control;
  m.xSectorSize = [](sqlite3_file* f) { return real_methods(f).xSectorSize(real(f)); };
  m.xDeviceCharacteristics = [](sqlite3_file* f) {
    return real_methods(f).xDeviceCharacteristics(real(f));
  };
  if (version >= 2) {
    m.xShmMap = [](sqlite3_file* f, int page, int size, int extend, void volatile** out) {
      return real_methods(f).xShmMap(real(f), page, size, extend, out);
    };
    m.xShmLock = [](sqlite3_file* f, int offset, int n, int flags) {
      return real_methods(f).xShmLock(real(f), offset, n, flags);
    };
    m.xShmBarrier = [](sqlite3_file* f) { real_methods(f).xShmBarrier(real(f)); };
    m.xShmUnmap = [](sqlite3_file* f, int remove) {
      return real_methods(f).xShmUnmap(real(f), remove);
    };
  }
  if (version >= 3) {
    m.xFetch = fetch;
    m.xUnfetch = [](sqlite3_file* f, sqlite3_int64 offset, void* pointer) {
      return real_methods(f).xUnfetch(real(f), offset, pointer);
    };
  }
  return m;
}

const sqlite3_io_methods* methods_for(int real_version) {
  static const sqlite3_io_methods by_version[] = {methods_of_version(1), methods_of_version(2),
                                                  methods_of_version(3)};
  return &by_version[std::clamp(real_version, 1, 3) - 1];
}

sqlite3_vfs* underneath(sqlite3_vfs* vfs) {
  return static_cast<sqlite3_vfs*>(vfs->pAppData);
}

int open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  sqlite3_vfs* below = underneath(vfs);
  if ((flags & SQLITE_OPEN_WAL) == 0) return below->xOpen(below, name, file, flags, out_flags);
  WalFile* w = wal(file);
  w->base.pMethods = nullptr;
  w->held = nullptr;
  w->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kFileHeader);
  const int rc = below->xOpen(below, name, w->real, flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  const sqlite3_io_methods* real_io = w->real->pMethods;
  if (real_io->xDeviceCharacteristics(w->real) & SQLITE_IOCAP_POWERSAFE_OVERWRITE) {
    try {
      auto held = std::make_unique<Held>();
      held->bytes.reserve(kMaxHeld);
      w->held = held.release();
    } catch (const std::bad_alloc&) {  // then this file's writes go straight through
    }
  }
  w->base.pMethods = methods_for(real_io->iVersion);
  return SQLITE_OK;
}

sqlite3_vfs* make_vfs(sqlite3_vfs* below, const std::string& name) {
  auto* vfs = new (std::nothrow) sqlite3_vfs(*below);
  if (vfs == nullptr) return nullptr;
  vfs->pNext = nullptr;
  vfs->szOsFile = kFileHeader + below->szOsFile;
  vfs->zName = name.c_str();
  vfs->pAppData = below;
  vfs->xOpen = open;
  vfs->xDelete = [](sqlite3_vfs* v, const char* path, int sync_dir) {
    return underneath(v)->xDelete(underneath(v), path, sync_dir);
  };
  vfs->xAccess = [](sqlite3_vfs* v, const char* path, int what, int* out) {
    return underneath(v)->xAccess(underneath(v), path, what, out);
  };
  vfs->xFullPathname = [](sqlite3_vfs* v, const char* path, int size, char* out) {
    return underneath(v)->xFullPathname(underneath(v), path, size, out);
  };
  vfs->xDlOpen = [](sqlite3_vfs* v, const char* path) {
    return underneath(v)->xDlOpen(underneath(v), path);
  };
  vfs->xDlError = [](sqlite3_vfs* v, int size, char* out) {
    underneath(v)->xDlError(underneath(v), size, out);
  };
  vfs->xDlSym = [](sqlite3_vfs* v, void* handle, const char* symbol) {
    return underneath(v)->xDlSym(underneath(v), handle, symbol);
  };
  vfs->xDlClose = [](sqlite3_vfs* v, void* handle) {
    underneath(v)->xDlClose(underneath(v), handle);
  };
  vfs->xRandomness = [](sqlite3_vfs* v, int size, char* out) {
    return underneath(v)->xRandomness(underneath(v), size, out);
  };
  vfs->xSleep = [](sqlite3_vfs* v, int micros) {
    return underneath(v)->xSleep(underneath(v), micros);
  };
  vfs->xCurrentTime = [](sqlite3_vfs* v, double* out) {
    return underneath(v)->xCurrentTime(underneath(v), out);
  };
  vfs->xGetLastError = [](sqlite3_vfs* v, int size, char* out) {
    return underneath(v)->xGetLastError(underneath(v), size, out);
  };
  if (below->iVersion >= 2 && below->xCurrentTimeInt64 != nullptr)
    vfs->xCurrentTimeInt64 = [](sqlite3_vfs* v, sqlite3_int64* out) {
      return underneath(v)->xCurrentTimeInt64(underneath(v), out);
    };
  // System-call overrides (version 3) stay the underlying VFS's own business.
  vfs->iVersion = std::min(below->iVersion, 2);
  vfs->xSetSystemCall = nullptr;
  vfs->xGetSystemCall = nullptr;
  vfs->xNextSystemCall = nullptr;
  return vfs;
}

}  // namespace

const char* wal_coalescing_vfs() noexcept {
  static std::mutex mutex;
  // Never freed: SQLite keeps registered VFSs until the process ends.
  using Registry = std::map<sqlite3_vfs*, std::pair<std::string, sqlite3_vfs*>>;
  static Registry* registered = nullptr;
  try {
    std::lock_guard lock(mutex);
    if (sqlite3_initialize() != SQLITE_OK) return nullptr;
    sqlite3_vfs* below = sqlite3_vfs_find(nullptr);
    if (below == nullptr) return nullptr;
    if (registered == nullptr) registered = new Registry;
    auto found = registered->find(below);
    if (found != registered->end()) return found->second.first.c_str();
    auto& entry = (*registered)[below];
    entry.first = std::string("saga-wal-coalescing-") + below->zName;
    entry.second = make_vfs(below, entry.first);
    if (entry.second == nullptr || sqlite3_vfs_register(entry.second, 0) != SQLITE_OK) {
      delete entry.second;
      registered->erase(below);
      return nullptr;
    }
    return entry.first.c_str();
  } catch (...) {
    return nullptr;
  }
}

WalWriteCounts wal_write_counts() noexcept {
  return {g_taken.load(), g_written.load()};
}

}  // namespace saga::sqlite_detail
