// Process-wide SQLite settings that make saga's stores and ledgers cheaper to run. They belong to
// the process, not to a store: the application decides, at the start of main(), before anything
// in the process has used SQLite (saga's stores and ledgers included).
//
// Thread safety: not thread-safe; nothing else may use SQLite while it runs.
#pragma once

#include <cstddef>

namespace saga {

// keep_sqlite_statement_journals_in_memory()'s default threshold: 1 MiB, sixteen times SQLite's.
inline constexpr std::size_t kStatementJournalInMemoryBytes = 1024 * 1024;

// Turns off SQLite's memory statistics. With them on (SQLite's default), every allocation SQLite
// makes takes a process-wide mutex to count it: about 400 mutex round trips per order saga in
// the orchestrator, 5.6 % of the engine's instructions (bench/instructions_per_saga.sh). With
// them off, sqlite3_memory_used() and sqlite3_memory_highwater() report nothing, and a soft heap
// limit (sqlite3_soft_heap_limit64) is not enforced.
//
// Returns true if the setting took effect; false, changing nothing, when SQLite was already
// initialized in this process (any connection opened earlier initializes it). Never throws.
bool disable_sqlite_memory_statistics() noexcept;

// Keeps statement and savepoint journals in memory up to `bytes` each (SQLite's default: 64 KiB)
// before they spill to a temporary file. A participant's ledger wraps every command of a batch
// in a savepoint, which journals each page the command changes; once one command of a batch
// journals more than the threshold (a page split can), SQLite moves the journal to a file in its
// temporary directory (/var/tmp unless SQLITE_TMPDIR or TMPDIR says otherwise) and every later
// command of the transaction writes its pages there, two write system calls per page. A journal
// in memory is one allocation of `bytes`, made when its transaction first journals a page and
// freed when the transaction ends; a journal that outgrows it still moves to a file.
//
// Returns true if the setting took effect; false, changing nothing, when SQLite was already
// initialized in this process, or `bytes` is 0 (to SQLite: every journal straight to a file) or
// above INT_MAX. Never throws.
bool keep_sqlite_statement_journals_in_memory(
    std::size_t bytes = kStatementJournalInMemoryBytes) noexcept;

}  // namespace saga
