#include "engine_capture.hpp"

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <stdexcept>
#include <utility>

#include "saga/engine.hpp"
#include "saga/forwarding_store.hpp"
#include "saga/memory_transport.hpp"
#include "saga/sqlite_store.hpp"

namespace bench {
namespace {

// Forwards to a real store and keeps a copy of every batch it commits.
class RecordingStore final : public saga::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  std::vector<saga::WriteBatch> batches;

  saga::StoreStatus commit(const saga::WriteBatch& batch) override {
    saga::StoreStatus status = inner().commit(batch);
    if (status && !batch.empty()) batches.push_back(batch);
    return status;
  }
};

// Every string field of a batch, in a fixed order (the replayer relies on the order).
template <class Visit>
void visit_strings(saga::WriteBatch& batch, Visit visit) {
  for (auto& write : batch.sagas) {
    visit(write.record.id);
    visit(write.record.data);
  }
  for (auto& entry : batch.journal) {
    visit(entry.saga_id);
    visit(entry.message_id);
    visit(entry.detail);
  }
  for (auto& row : batch.outbox) {
    visit(row.message_id);
    visit(row.saga_id);
    visit(row.payload);
  }
  for (auto& id : batch.inbox) visit(id);
  for (auto& letter : batch.dead_letters) {
    visit(letter.message_id);
    visit(letter.saga_id);
    visit(letter.raw);
  }
  for (auto& mark : batch.dispatched) visit(mark.message_id);
  for (auto& id : batch.replied) visit(id);
  for (auto& id : batch.reopened) visit(id);
}

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

std::string replay_uuid(std::size_t saga, int index) {
  const std::uint64_t a = splitmix((static_cast<std::uint64_t>(saga) << 8) ^
                                   static_cast<std::uint64_t>(index) ^ 0x5a6a5a6aULL);
  const std::uint64_t b = splitmix(a);
  char text[40];
  // Ordered by saga like the engine's time-ordered ids: the saga number stands in for the time.
  const std::uint64_t order =
      (static_cast<std::uint64_t>(saga) << 4) | (static_cast<unsigned>(index) & 0xfu);
  std::snprintf(text, sizeof text, "%08x-%04x-7%03x-%04x-%012llx",
                static_cast<unsigned>(order >> 16), static_cast<unsigned>(order & 0xffff),
                static_cast<unsigned>(a & 0xfff),
                static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return text;
}

order::OrderData typical_order(int n) {
  order::OrderData data;
  data.order_id = "order-" + std::to_string(n);
  data.customer_id = "customer-" + std::to_string(n % 97);
  data.address = std::to_string(1 + n % 200) + " Main St";
  data.items = {{"sku-book", 2, 1800}, {"sku-lamp", 1, 4500}};
  return data;
}

std::string reply_to(const std::string& command_bytes) {
  auto decoded = saga::decode_envelope(command_bytes);
  const auto* command = std::get_if<saga::Envelope>(&decoded);
  if (!command) throw std::runtime_error("captured command does not decode");
  // The sample services derive their ids from the order id.
  const std::string order_id = command->data.value("order_id", "");
  saga::Envelope reply;
  if (command->event_type == inventory::Reserve::type) {
    reply.event_type = inventory::Reserved::type;
    reply.source = "inventory";
    reply.data = inventory::Reserved{"res-" + order_id};
  } else if (command->event_type == payment::Charge::type) {
    reply.event_type = payment::Charged::type;
    reply.source = "payment";
    reply.data = payment::Charged{"pay-" + order_id};
  } else if (command->event_type == shipping::Ship::type) {
    reply.event_type = shipping::Shipped::type;
    reply.source = "shipping";
    reply.data = shipping::Shipped{"track-" + order_id};
  } else {
    throw std::runtime_error("no reply for captured command " + command->event_type);
  }
  reply.event_id = saga::new_uuid();
  reply.timestamp = std::chrono::system_clock::now();
  reply.correlation_id = command->correlation_id;
  reply.causation_id = command->event_id;
  reply.kind = saga::MessageKind::reply;
  return saga::encode_envelope(reply);
}

CapturedSaga capture_order_saga() {
  saga::Options options;
  options.store.path = ":memory:";
  options.max_batch_messages = 1;
  options.idle_wait = std::chrono::milliseconds{1};
  auto opened = saga::SqliteStore::open(options.store);
  if (!opened) throw std::runtime_error("capture: " + opened.error().message);
  RecordingStore store(*opened.value());
  saga::MemoryTransport transport;
  saga::SystemClock clock;
  saga::Engine engine(options, store, transport, clock);
  engine.register_saga<order::OrderSaga>();

  // Two sagas: the first commit of an engine also writes one-time rows (its definitions); the
  // second saga's batches are what every saga costs.
  CapturedSaga captured;
  for (int saga = 1; saga <= 2; ++saga) {
    store.batches.clear();
    captured.commands.clear();
    captured.replies.clear();
    captured.data = typical_order(saga);
    engine.start<order::OrderSaga>(captured.data);
    engine.run_once();
    for (int step = 0; step < 3; ++step) {
      auto sent = transport.take_sent();
      if (sent.size() != 1) throw std::runtime_error("capture: expected one command per step");
      captured.commands.push_back(sent[0].bytes);
      captured.replies.push_back(reply_to(sent[0].bytes));
      transport.deliver(captured.replies.back());
      engine.run_once();
    }
  }
  captured.events.clear();
  for (auto& event : transport.take_events()) captured.events.push_back(event.bytes);
  if (engine.stats().sagas_completed != 2 || store.batches.size() != 4)
    throw std::runtime_error("capture: the order saga did not complete in four commits");
  for (const auto& batch : store.batches)
    if (!batch.definitions.empty() || !batch.answers.empty() || !batch.dead_letters.empty())
      throw std::runtime_error("capture: a step wrote more than a step's rows");
  captured.steps = std::move(store.batches);
  return captured;
}

StepReplayer::StepReplayer(const CapturedSaga& saga) : originals_(saga.steps) {
  // Number the distinct UUIDs in order of first appearance.
  std::map<std::string, int, std::less<>> numbers;
  auto compile = [&](const std::string& text) {
    StringTemplate pieces;
    std::size_t literal_from = 0;
    for (std::size_t i = 0; i + 36 <= text.size(); ++i) {
      const std::string_view candidate(text.data() + i, 36);
      if (!saga::is_uuid(candidate)) continue;
      auto [slot, inserted] =
          numbers.emplace(std::string(candidate), static_cast<int>(numbers.size()));
      pieces.push_back({text.substr(literal_from, i - literal_from), slot->second});
      i += 35;
      literal_from = i + 1;
    }
    pieces.push_back({text.substr(literal_from), -1});
    return pieces;
  };
  for (auto& batch : originals_) {
    std::vector<StringTemplate> fields;
    visit_strings(batch, [&](std::string& text) { fields.push_back(compile(text)); });
    templates_.push_back(std::move(fields));
  }
}

std::string StepReplayer::fill(const StringTemplate& pieces, std::size_t saga) const {
  std::string out;
  for (const Piece& piece : pieces) {
    out += piece.text;
    if (piece.id >= 0) out += replay_uuid(saga, piece.id);
  }
  return out;
}

void StepReplayer::append(std::size_t saga, std::size_t step, saga::WriteBatch& batch) {
  saga::WriteBatch copy = originals_.at(step);
  std::size_t field = 0;
  const auto& fields = templates_[step];
  visit_strings(copy, [&](std::string& text) { text = fill(fields[field++], saga); });
  auto move_all = [](auto& from, auto& to) {
    for (auto& item : from) to.push_back(std::move(item));
  };
  move_all(copy.sagas, batch.sagas);
  move_all(copy.journal, batch.journal);
  move_all(copy.outbox, batch.outbox);
  move_all(copy.inbox, batch.inbox);
  move_all(copy.dead_letters, batch.dead_letters);
  move_all(copy.dispatched, batch.dispatched);
  move_all(copy.replied, batch.replied);
  move_all(copy.reopened, batch.reopened);
  move_all(copy.replayed, batch.replayed);
  move_all(copy.discarded, batch.discarded);
  move_all(copy.answers, batch.answers);
  move_all(copy.definitions, batch.definitions);
  batch.at = copy.at;
}

}  // namespace bench
