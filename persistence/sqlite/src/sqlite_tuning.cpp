#include "saga/sqlite_tuning.hpp"

#include <sqlite3.h>

#include <climits>

namespace saga {

bool disable_sqlite_memory_statistics() noexcept {
  return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
}

bool keep_sqlite_statement_journals_in_memory(std::size_t bytes) noexcept {
  if (bytes == 0 || bytes > static_cast<std::size_t>(INT_MAX)) return false;
  return sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, static_cast<int>(bytes)) == SQLITE_OK;
}

}  // namespace saga
