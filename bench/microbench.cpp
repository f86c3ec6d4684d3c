// saga_microbench: Google Benchmark micro-benchmarks of the pieces a saga step is made of, with
// the order saga's real messages and the engine's real write batches (bench/engine_capture.hpp).
// They time CPU work only (stores run with synchronous=OFF): use them to catch regressions;
// saga_bench measures the whole.
//
//   build/default/bench/saga_microbench [--benchmark_filter=Envelope]
#include <benchmark/benchmark.h>

#include <filesystem>
#include <stdexcept>

#include "engine_capture.hpp"
#include "order/order_saga.hpp"
#include "saga/engine.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace {

namespace fs = std::filesystem;

const bench::CapturedSaga& captured() {
  static const bench::CapturedSaga saga = bench::capture_order_saga();
  return saga;
}

const saga::SagaType& order_type() {
  static const std::unique_ptr<saga::SagaType> type = saga::make_saga_type<order::OrderSaga>();
  return *type;
}

struct Reply {
  std::string type;
  nlohmann::json data;
};

const std::vector<Reply>& replies() {
  static const std::vector<Reply> list = [] {
    std::vector<Reply> out;
    for (const auto& bytes : captured().replies) {
      auto decoded = saga::decode_envelope(bytes);
      const auto& envelope = std::get<saga::Envelope>(decoded);
      out.push_back({envelope.event_type, envelope.data});
    }
    return out;
  }();
  return list;
}

// ---- Boost.MSM dispatch of the order saga -------------------------------------------------

void BM_OrderSaga_CreateBeginAndThreeReplies(benchmark::State& state) {
  const nlohmann::json data = captured().data;
  for (auto _ : state) {
    auto instance = order_type().create(data);
    auto reaction = instance->begin();
    for (const auto& reply : replies()) reaction = instance->handle(reply.type, reply.data);
    if (instance->status() != saga::SagaStatus::Completed)
      state.SkipWithError("the saga did not complete");
    benchmark::DoNotOptimize(reaction);
  }
  state.SetItemsProcessed(state.iterations() * 4);  // steps
}
BENCHMARK(BM_OrderSaga_CreateBeginAndThreeReplies);

void BM_OrderSaga_RestoreAndHandleOneReply(benchmark::State& state) {
  nlohmann::json data = captured().data;
  data["reservation_id"] = "res-order-1";
  const std::string state_name = "awaiting:payment.Charge";
  for (auto _ : state) {
    auto restored = order_type().restore(state_name, saga::SagaStatus::Running, data);
    auto& instance = std::get<0>(restored);
    auto reaction = instance->handle(replies()[1].type, replies()[1].data);
    if (!reaction.applied()) state.SkipWithError(reaction.reason.c_str());
    benchmark::DoNotOptimize(reaction);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OrderSaga_RestoreAndHandleOneReply);

// ---- The envelope codec -------------------------------------------------------------------

void BM_Envelope_DecodeReply(benchmark::State& state) {
  const std::string& bytes = captured().replies[1];
  for (auto _ : state) {
    auto decoded = saga::decode_envelope(bytes);
    benchmark::DoNotOptimize(decoded);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}
BENCHMARK(BM_Envelope_DecodeReply);

void BM_Envelope_DecodeCommand(benchmark::State& state) {
  const std::string& bytes = captured().commands[0];
  for (auto _ : state) {
    auto decoded = saga::decode_envelope(bytes);
    benchmark::DoNotOptimize(decoded);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}
BENCHMARK(BM_Envelope_DecodeCommand);

void BM_Envelope_EncodeCommand(benchmark::State& state) {
  auto decoded = saga::decode_envelope(captured().commands[0]);
  const saga::Envelope envelope = std::get<saga::Envelope>(decoded);
  for (auto _ : state) {
    std::string bytes = saga::encode_envelope(envelope);
    benchmark::DoNotOptimize(bytes);
  }
}
BENCHMARK(BM_Envelope_EncodeCommand);

// ---- The SQLite store ---------------------------------------------------------------------

class ScratchStore {
 public:
  explicit ScratchStore(const std::string& name) {
    path_ = (fs::temp_directory_path() / ("saga_microbench-" + name + ".db")).string();
    remove();
    saga::StoreOptions options;
    options.path = path_;
    options.durability = saga::Durability::off;
    auto opened = saga::SqliteStore::open(options);
    if (!opened) throw std::runtime_error(opened.error().message);
    store_ = std::move(opened).value();
  }
  ~ScratchStore() {
    store_.reset();
    remove();
  }
  saga::SqliteStore& operator*() { return *store_; }

 private:
  void remove() {
    for (const char* suffix : {"", "-wal", "-shm", ".lock"}) fs::remove(path_ + suffix);
  }
  std::string path_;
  std::unique_ptr<saga::SqliteStore> store_;
};

// One transaction of B engine steps (the replayed batches of B sagas at the same step).
void BM_Store_CommitSteps(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  ScratchStore store("commit");
  bench::StepReplayer replayer(captured());
  std::size_t saga = 0, step = 0;
  for (auto _ : state) {
    state.PauseTiming();
    saga::WriteBatch writes;
    for (std::size_t i = 0; i < batch; ++i) replayer.append(saga + i, step, writes);
    if (++step == replayer.steps_per_saga()) {
      step = 0;
      saga += batch;
    }
    state.ResumeTiming();
    if (!(*store).commit(writes)) state.SkipWithError("commit failed");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch));
}
BENCHMARK(BM_Store_CommitSteps)->Arg(1)->Arg(64);

void fill(saga::SqliteStore& store, std::size_t sagas) {
  bench::StepReplayer replayer(captured());
  for (std::size_t first = 0; first < sagas; first += 256)
    for (std::size_t step = 0; step < replayer.steps_per_saga(); ++step) {
      saga::WriteBatch writes;
      for (std::size_t i = first; i < std::min(sagas, first + 256); ++i)
        replayer.append(i, step, writes);
      if (!store.commit(writes)) throw std::runtime_error("fill: commit failed");
    }
}

void BM_Store_LoadSaga(benchmark::State& state) {
  ScratchStore store("load");
  constexpr std::size_t kSagas = 10000;
  fill(*store, kSagas);
  // The saga id is UUID number 0 of each replayed saga (its first appearance in the start).
  std::size_t n = 0;
  for (auto _ : state) {
    auto loaded = (*store).load_saga(bench::replay_uuid(n++ % kSagas, 0));
    if (!loaded || !loaded.value()) state.SkipWithError("saga not found");
    benchmark::DoNotOptimize(loaded);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Store_LoadSaga);

void BM_Store_InboxContains(benchmark::State& state) {
  ScratchStore store("inbox");
  fill(*store, 10000);
  std::size_t n = 0;
  for (auto _ : state) {
    auto seen = (*store).inbox_contains(bench::replay_uuid(1000000 + n++, 0));  // a miss
    benchmark::DoNotOptimize(seen);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Store_InboxContains);

// A destination's backlog read back after an outage (the engine's send queue): 10,000 commands
// for the inventory service wait among 20,000 closed ones for the others, all with the real
// command's size; read in chunks of N from a cursor, as Engine::read_backlogs does. Items: the
// backlog's commands read (the walk passes the others' rows too).
void BM_Store_ReadBacklog(benchmark::State& state) {
  const auto chunk = static_cast<std::size_t>(state.range(0));
  ScratchStore store("backlog");
  constexpr int kCommands = 30000;
  const std::string payload(454, 'x');
  const char* destinations[] = {"inventory", "payment", "shipping"};
  for (int first = 0; first < kCommands; first += 1000) {
    saga::WriteBatch writes;
    for (int i = first; i < first + 1000; ++i) {
      saga::OutboxMessage row;
      row.message_id = bench::replay_uuid(static_cast<std::size_t>(i), 1);
      row.saga_id = bench::replay_uuid(static_cast<std::size_t>(i), 0);
      row.destination = destinations[i % 3];
      row.message_type = "command";
      row.payload = payload;
      if (i % 3 != 0) writes.replied.push_back(row.message_id);
      writes.outbox.push_back(std::move(row));
    }
    if (!(*store).commit(writes)) throw std::runtime_error("backlog: commit failed");
  }
  std::int64_t after = 0;
  std::int64_t read = 0;
  for (auto _ : state) {
    auto rows = (*store).pending_outbox_for("inventory", after, chunk);
    if (!rows) state.SkipWithError("read failed");
    if (rows.value().empty()) {
      after = 0;  // from the start again
      continue;
    }
    after = rows.value().back().sequence;
    read += static_cast<std::int64_t>(rows.value().size());
  }
  state.SetItemsProcessed(read);
}
BENCHMARK(BM_Store_ReadBacklog)->Arg(1000)->Arg(10000);

// ---- The engine loop, in memory -----------------------------------------------------------

// One whole order saga through saga::Engine: an in-memory database, the in-memory transport, the
// replies answered at once. The engine's own CPU per saga, without fsync or sockets.
void BM_Engine_OrderSagaInMemory(benchmark::State& state) {
  saga::Options options;
  options.store.path = ":memory:";
  options.idle_wait = std::chrono::milliseconds{0};
  auto store = saga::SqliteStore::open(options.store).value();
  saga::MemoryTransport transport;
  saga::SystemClock clock;
  saga::Engine engine(options, *store, transport, clock);
  engine.register_saga<order::OrderSaga>();
  const order::OrderData data = captured().data;
  for (auto _ : state) {
    engine.start<order::OrderSaga>(data);
    engine.run_once();
    for (int step = 0; step < 3; ++step) {
      state.PauseTiming();  // the participant's side is not the engine's work
      for (auto& sent : transport.take_sent()) transport.deliver(bench::reply_to(sent.bytes));
      state.ResumeTiming();
      engine.run_once();
    }
    transport.take_events();
  }
  if (engine.stats().sagas_completed != static_cast<std::uint64_t>(state.iterations()))
    state.SkipWithError("not every saga completed");
  state.SetItemsProcessed(state.iterations());
  state.counters["steps/s"] = benchmark::Counter(4.0 * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Engine_OrderSagaInMemory);

}  // namespace

BENCHMARK_MAIN();
