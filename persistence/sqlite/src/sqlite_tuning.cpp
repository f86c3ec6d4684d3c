#include "saga/sqlite_tuning.hpp"

#include <sqlite3.h>

namespace saga {

bool disable_sqlite_memory_statistics() noexcept {
  return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
}

}  // namespace saga
