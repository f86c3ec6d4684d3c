#include "database.hpp"

#include <chrono>
#include <filesystem>
#include <utility>

namespace sagactl {
namespace {

constexpr int kBusyTimeoutMs = 5000;

std::string describe(sqlite3* db, int rc) {
  const char* message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return message != nullptr ? message : sqlite3_errstr(rc);
}

[[noreturn]] void fail(const std::string& path, sqlite3* db, int rc) {
  throw Failure(kDatabaseError, "database " + path + ": " + describe(db, rc));
}

}  // namespace

Statement& Statement::bind(int index, std::string_view text) {
  int rc = sqlite3_bind_text64(stmt_, index, text.data() != nullptr ? text.data() : "", text.size(),
                               SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) fail(path_, db_, rc);
  return *this;
}

Statement& Statement::bind(int index, std::int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) fail(path_, db_, rc);
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(path_, db_, rc);
}

std::string Statement::text(int column) const {
  const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  if (data == nullptr) return {};
  return std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
}

std::string Statement::blob(int column) const {
  const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
  if (data == nullptr) return {};
  return std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
}

std::optional<std::int64_t> Statement::optional_integer(int column) const noexcept {
  if (is_null(column)) return std::nullopt;
  return integer(column);
}

Database Database::open(const std::string& path, int flags) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error))
    throw Failure(kDatabaseError, "database " + path +
                                      " does not exist (pass --db PATH or set "
                                      "SAGA_DB to the orchestrator's file)");
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  std::unique_ptr<sqlite3, Closer> db(raw);
  if (rc != SQLITE_OK) fail(path, raw, rc);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  sqlite3_extended_result_codes(raw, 1);
  Database database(std::move(db), path);
  if (!database.has_table("sagas"))
    throw Failure(kDatabaseError,
                  "database " + path + " is not a saga database (it has no sagas table)");
  return database;
}

Database Database::open_read_only(const std::string& path) {
  return open(path, SQLITE_OPEN_READONLY);
}

Database Database::open_read_write(const std::string& path) {
  return open(path, SQLITE_OPEN_READWRITE);
}

Statement Database::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) fail(path_, db_.get(), rc);
  return Statement(db_.get(), stmt, path_);
}

void Database::execute(const char* sql) {
  int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(path_, db_.get(), rc);
}

bool Database::has_table(std::string_view table) {
  auto query = prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1");
  query.bind(1, table);
  return query.step();
}

bool Database::has_column(std::string_view table, std::string_view column) {
  auto query = prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2");
  query.bind(1, table).bind(2, column);
  return query.step();
}

int Database::schema_version() {
  auto query = prepare("PRAGMA user_version");
  return query.step() ? static_cast<int>(query.integer(0)) : 0;
}

}  // namespace sagactl
