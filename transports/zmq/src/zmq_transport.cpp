#include "saga/zmq_transport.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "zmq_common.hpp"

namespace saga {
namespace {

using Clock = std::chrono::steady_clock;
using namespace zmq_detail;

constexpr std::size_t kMaxDefectBytes = 64 * 1024;
// Frames up to this size are copied into the ZeroMQ message itself (no allocation: ZeroMQ keeps
// up to 33 bytes inline); larger ones go through SentBuffers.
constexpr std::size_t kCopiedFrameBytes = 64;
// A peer dead for this many dead periods is forgotten: instance names change with every restart
// ("<service>-<host>-<pid>" by default), so remembering them all would grow without bound.
constexpr int kForgetDeadAfter = 10;
// Connections whose ANNOUNCE was refused, remembered so that their heartbeats are answered with
// "bad_announce", not "not_announced" (which makes a participant announce again, and silence
// makes it reconnect and announce again: a dead letter each time).
constexpr std::size_t kMaxRefusedPeers = 4096;
constexpr const char* kWakeEndpoint = "inproc://saga.zmq.wake";
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kZapDomain = "saga";

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xf]);
  }
  return out;
}

// A frame type quoted for a diagnostic: at most 32 bytes, non-printable bytes as '?'.
std::string printable(std::string_view bytes) {
  std::string out;
  for (char c : bytes.substr(0, 32)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (bytes.size() > 32) out += "...";
  return out;
}

// RFC 27 (ZAP) handler for CURVE: admits only the listed client keys (32-byte binary), each
// mapped to the service it is bound to ("" for any), which becomes the connection's User-Id.
// Runs until the context is shut down.
void serve_zap(zmq::socket_t socket, std::map<std::string, std::string> allowed) {
  while (true) {
    try {
      std::vector<zmq::message_t> request;
      if (!zmq::recv_multipart(socket, std::back_inserter(request))) continue;
      const auto key = request.size() == 7 && request[0].to_string_view() == "1.0" &&
                               request[5].to_string_view() == "CURVE"
                           ? allowed.find(request[6].to_string())
                           : allowed.end();
      const bool admitted = key != allowed.end();
      const std::string request_id = request.size() > 1 ? request[1].to_string() : std::string();
      const std::array<zmq::const_buffer, 6> reply{
          zmq::str_buffer("1.0"),
          zmq::buffer(request_id),
          admitted ? zmq::str_buffer("200") : zmq::str_buffer("400"),
          admitted ? zmq::str_buffer("OK") : zmq::str_buffer("client key not allowed"),
          admitted ? zmq::buffer(key->second) : zmq::const_buffer(),  // user id
          zmq::const_buffer()};                                       // metadata
      zmq::send_multipart(socket, reply);
    } catch (const zmq::error_t& error) {
      if (error.num() == ETERM) break;
    }
  }
  socket.close();
}

struct Peer {
  std::string service;
  std::string instance;
  std::string key_service;  // with keys bound: the service its key is bound to, "" for any
  bool alive = true;
  Clock::time_point last_seen;
  Clock::time_point last_sent;
};

struct Service {
  std::vector<std::string> routing_ids;  // announcement order
  std::size_t next = 0;                  // round-robin position
};

enum class Delivery { sent, would_block, unreachable };

}  // namespace

// Frames the loop sends are handed to ZeroMQ without a copy, in buffers the loop allocates; the
// I/O thread that wrote them to the socket gives them back here, and the loop frees them. A copy
// would be allocated by the loop and freed by the I/O thread: glibc then returns each buffer to
// the loop's malloc arena under that arena's lock, which the two threads fought over (a futex
// call per saga at saturation). The loop collects what was given back every kReclaimEvery
// messages, and only when the I/O thread is not holding the list at that moment.
class SentBuffers {
 public:
  SentBuffers() = default;
  SentBuffers(const SentBuffers&) = delete;
  SentBuffers& operator=(const SentBuffers&) = delete;
  ~SentBuffers() {
    std::lock_guard lock(mutex_);
    for (void* data : returned_) std::free(data);
  }

  // A ZeroMQ message owning a copy of `frame`, given back once ZeroMQ is done with it. The loop's
  // thread only.
  zmq::message_t message(std::string_view frame) {
    if (++since_reclaim_ >= kReclaimEvery) reclaim();
    void* data = std::malloc(frame.size());
    if (data == nullptr) throw std::bad_alloc();
    std::memcpy(data, frame.data(), frame.size());
    return zmq::message_t(data, frame.size(), &SentBuffers::give_back, this);
  }

 private:
  static constexpr int kReclaimEvery = 64;

  void reclaim() {
    {
      std::unique_lock lock(mutex_, std::try_to_lock);
      if (!lock.owns_lock()) return;  // the next message tries again
      since_reclaim_ = 0;
      returned_.swap(freeing_);
    }
    for (void* data : freeing_) std::free(data);
    freeing_.clear();
  }

  // Called by ZeroMQ: by its I/O thread, or by the sending thread for a message never sent.
  static void give_back(void* data, void* self) {
    auto& buffers = *static_cast<SentBuffers*>(self);
    std::lock_guard lock(buffers.mutex_);
    buffers.returned_.push_back(data);
  }

  std::mutex mutex_;
  std::vector<void*> returned_;  // under mutex_
  std::vector<void*> freeing_;   // the loop's
  int since_reclaim_ = 0;        // the loop's
};

struct ZmqTransport::Impl {
  explicit Impl(const ZmqTransportOptions& o) : options(o) {
    interval = std::max(options.heartbeat_interval, std::chrono::milliseconds(1));
    dead_after = interval * std::max(options.heartbeat_liveness, 1);
    forget_after = dead_after * kForgetDeadAfter;
  }
  ~Impl();

  void setup();
  Delivery send_to(const std::string& routing_id, std::initializer_list<std::string_view> frames);
  void send_error(const std::string& routing_id, std::string_view code, std::string_view message);
  Clock::time_point housekeeping(Clock::time_point now);
  std::optional<InboundMessage> read_router();
  std::optional<InboundMessage> announce(const std::string& routing_id, const std::string& body,
                                         std::string raw, Clock::time_point now,
                                         const std::optional<std::string>& key_service);
  InboundMessage refuse_announce(const std::string& routing_id, std::string raw,
                                 const std::string& message);
  std::string tell_unannounced(const std::string& routing_id, std::string_view frame_type);
  void forget(const std::string& routing_id);
  std::string peer_name(const std::string& routing_id) const;
  void drain_wake();

  ZmqTransportOptions options;
  std::chrono::milliseconds interval;
  std::chrono::milliseconds dead_after;
  std::chrono::milliseconds forget_after;
  Clock::time_point housekeeping_due{};
  SentBuffers sent_buffers;  // outlives the context, whose closing gives back the unsent
  zmq::context_t context;
  zmq::socket_t router;
  zmq::socket_t publisher;              // XPUB: subscriptions arrive as messages
  std::set<std::string> subscriptions;  // topics with at least one subscriber
  zmq::socket_t wake_receiver;
  zmq::socket_t wake_sender;
  std::mutex wake_mutex;
  std::thread zap_thread;
  bool keys_bound = false;  // some CURVE keys are bound to a service (their User-Id)
  std::set<std::string, std::less<>> bound_services;  // services that take only their own keys
  std::string bound_router;
  std::string bound_events;
  std::map<std::string, Peer> peers;  // by routing id; announced peers only
  std::set<std::string> refused;      // routing ids whose last ANNOUNCE was refused (bounded)
  std::map<std::string, Service, std::less<>> services;
};

ZmqTransport::Impl::~Impl() {
  router.close();
  publisher.close();
  wake_receiver.close();
  wake_sender.close();
  context.shutdown();  // the ZAP thread's blocking receive fails with ETERM
  if (zap_thread.joinable()) zap_thread.join();
  context.close();
}

void ZmqTransport::Impl::setup() {
  wake_receiver = zmq::socket_t(context, zmq::socket_type::pair);
  wake_receiver.set(zmq::sockopt::linger, 0);
  wake_receiver.set(zmq::sockopt::rcvhwm, 1);
  wake_receiver.bind(kWakeEndpoint);
  wake_sender = zmq::socket_t(context, zmq::socket_type::pair);
  wake_sender.set(zmq::sockopt::linger, 0);
  wake_sender.set(zmq::sockopt::sndhwm, 1);
  wake_sender.connect(kWakeEndpoint);

  router = zmq::socket_t(context, zmq::socket_type::router);
  router.set(zmq::sockopt::router_mandatory, true);
  router.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(options.max_message_bytes));
  router.set(zmq::sockopt::sndhwm, options.high_water_mark);
  router.set(zmq::sockopt::rcvhwm, options.high_water_mark);
  router.set(zmq::sockopt::linger, 0);

  if (options.curve) {
    if (!zmq_has("curve")) throw std::runtime_error("libzmq was built without CURVE support");
    std::string secret = read_z85_key_file(options.curve->secret_key_file, "CURVE secret key");
    char public_key[41] = {};
    if (zmq_curve_public(public_key, secret.c_str()) != 0) {
      wipe(secret);
      throw std::runtime_error("cannot derive the CURVE public key from '" +
                               options.curve->secret_key_file + "'");
    }
    std::map<std::string, std::string> allowed;  // binary key -> the service it is bound to
    auto admit = [&](const std::string& file, const std::string& service) {
      auto [listed, added] = allowed.emplace(
          z85_to_binary(read_z85_key_file(file, "CURVE client public key")), service);
      if (added || listed->second == service) return;
      auto bound_to = [](const std::string& name) {
        return name.empty() ? std::string("any service") : "service '" + name + "'";
      };
      throw std::runtime_error("the CURVE client key in '" + file + "' is listed for " +
                               bound_to(service) + " and already for " + bound_to(listed->second) +
                               ": a key is bound to one service, or to any");
    };
    for (const auto& file : options.curve->allowed_client_key_files) admit(file, "");
    for (const auto& [service, files] : options.curve->service_key_files) {
      if (service.empty())
        throw std::runtime_error("CURVE client keys are bound to an empty service name");
      for (const auto& file : files) admit(file, service);
      if (!files.empty()) bound_services.insert(service);
    }
    keys_bound = !bound_services.empty();
    // The handler must be bound before the first handshake: without one, libzmq admits anyone.
    zmq::socket_t zap(context, zmq::socket_type::rep);
    zap.set(zmq::sockopt::linger, 0);
    zap.bind(kZapEndpoint);
    zap_thread = std::thread(serve_zap, std::move(zap), std::move(allowed));
    router.set(zmq::sockopt::curve_server, true);
    router.set(zmq::sockopt::curve_secretkey, secret);
    router.set(zmq::sockopt::zap_domain, kZapDomain);
    wipe(secret);
  }

  try {
    router.bind(options.router_endpoint);
  } catch (const zmq::error_t& error) {
    throw std::runtime_error("cannot bind ROUTER to '" + options.router_endpoint +
                             "': " + error.what());
  }
  bound_router = router.get(zmq::sockopt::last_endpoint);

  if (!options.events_endpoint.empty()) {
    publisher = zmq::socket_t(context, zmq::socket_type::xpub);
    publisher.set(zmq::sockopt::sndhwm, options.high_water_mark);
    publisher.set(zmq::sockopt::linger, 0);
    try {
      publisher.bind(options.events_endpoint);
    } catch (const zmq::error_t& error) {
      throw std::runtime_error("cannot bind XPUB to '" + options.events_endpoint +
                               "': " + error.what());
    }
    bound_events = publisher.get(zmq::sockopt::last_endpoint);
  }
}

Delivery ZmqTransport::Impl::send_to(const std::string& routing_id,
                                     std::initializer_list<std::string_view> frames) {
  try {
    // ROUTER_MANDATORY: the routing-id frame fails with EHOSTUNREACH (peer gone) or EAGAIN
    // (its queue is full); once it is accepted the rest of the message is too.
    if (!router.send(zmq::buffer(routing_id), zmq::send_flags::sndmore | zmq::send_flags::dontwait))
      return Delivery::would_block;
    std::size_t left = frames.size();
    for (std::string_view frame : frames) {
      const auto flags = --left > 0 ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                    : zmq::send_flags::dontwait;
      if (frame.size() <= kCopiedFrameBytes)
        (void)router.send(zmq::buffer(frame), flags);
      else
        (void)router.send(sent_buffers.message(frame), flags);
    }
    return Delivery::sent;
  } catch (const zmq::error_t&) {
    return Delivery::unreachable;
  }
}

void ZmqTransport::Impl::send_error(const std::string& routing_id, std::string_view code,
                                    std::string_view message) {
  const std::string body = nlohmann::json{{"code", code}, {"message", message}}.dump();
  if (send_to(routing_id, {kError, body}) == Delivery::sent) {
    if (auto it = peers.find(routing_id); it != peers.end()) it->second.last_sent = Clock::now();
  }
}

// Declares silent peers dead, forgets long-dead ones and heartbeats idle ones; returns when it is
// next due. Nothing becomes due before the time it returned, so calls in between are free.
Clock::time_point ZmqTransport::Impl::housekeeping(Clock::time_point now) {
  if (now < housekeeping_due) return housekeeping_due;
  Clock::time_point next_due = now + interval;
  std::vector<std::string> gone;
  for (auto& [routing_id, peer] : peers) {
    if (!peer.alive || now - peer.last_seen >= dead_after) {
      peer.alive = false;
      if (now - peer.last_seen >= forget_after)
        gone.push_back(routing_id);
      else
        next_due = std::min(next_due, peer.last_seen + forget_after);
      continue;
    }
    if (now - peer.last_sent >= interval) {
      if (send_to(routing_id, {kHeartbeat}) == Delivery::unreachable) {
        peer.alive = false;
        continue;
      }
      peer.last_sent = now;  // also when the queue is full: the peer is not idle
    }
    next_due = std::min({next_due, peer.last_sent + interval, peer.last_seen + dead_after});
  }
  for (const auto& routing_id : gone) forget(routing_id);
  housekeeping_due = next_due;
  return next_due;
}

std::string ZmqTransport::Impl::peer_name(const std::string& routing_id) const {
  if (auto it = peers.find(routing_id); it != peers.end()) {
    return it->second.service + "/" + it->second.instance;
  }
  return "unannounced peer " + hex(routing_id);
}

void ZmqTransport::Impl::forget(const std::string& routing_id) {
  refused.erase(routing_id);
  auto it = peers.find(routing_id);
  if (it == peers.end()) return;
  if (auto service = services.find(it->second.service); service != services.end()) {
    auto& ids = service->second.routing_ids;
    auto pos = std::find(ids.begin(), ids.end(), routing_id);
    if (pos != ids.end()) {
      const auto index = static_cast<std::size_t>(pos - ids.begin());
      ids.erase(pos);
      if (service->second.next > index) --service->second.next;
      if (service->second.next >= ids.size()) service->second.next = 0;
    }
    if (ids.empty()) services.erase(service);
  }
  peers.erase(it);
}

InboundMessage ZmqTransport::Impl::refuse_announce(const std::string& routing_id, std::string raw,
                                                   const std::string& message) {
  if (refused.size() >= kMaxRefusedPeers && !refused.contains(routing_id))
    refused.erase(refused.begin());  // at worst, one more dead letter from that peer
  refused.insert(routing_id);
  send_error(routing_id, "bad_announce", message);
  return InboundMessage{std::move(raw), peer_name(routing_id), "bad_announce", message};
}

// Tells a connection that is not announced so: "not_announced", upon which a participant
// announces; but "bad_announce" again when its ANNOUNCE was refused, which it would only repeat
// (a dead letter each time). Returns the message sent.
std::string ZmqTransport::Impl::tell_unannounced(const std::string& routing_id,
                                                 std::string_view frame_type) {
  const bool was_refused = refused.contains(routing_id);
  std::string message =
      std::string(frame_type) +
      (was_refused ? " from a connection whose ANNOUNCE was refused" : " before ANNOUNCE");
  send_error(routing_id, was_refused ? "bad_announce" : "not_announced", message);
  return message;
}

std::optional<InboundMessage> ZmqTransport::Impl::announce(
    const std::string& routing_id, const std::string& body, std::string raw, Clock::time_point now,
    const std::optional<std::string>& key_service) {
  const auto json = nlohmann::json::parse(body, nullptr, false);
  const bool valid =
      json.is_object() && json.contains("protocol") && json["protocol"].is_number_integer() &&
      json["protocol"].get<long long>() == kProtocolVersion && json.contains("service") &&
      json["service"].is_string() && !json["service"].get_ref<const std::string&>().empty() &&
      json.contains("instance") && json["instance"].is_string() &&
      !json["instance"].get_ref<const std::string&>().empty();
  if (!valid) {
    const std::string message =
        "ANNOUNCE must be a JSON object with \"protocol\": 1 and non-empty string \"service\" "
        "and \"instance\"";
    return refuse_announce(routing_id, std::move(raw), message);
  }
  const auto& service = json["service"].get_ref<const std::string&>();
  const auto& instance = json["instance"].get_ref<const std::string&>();
  if (keys_bound) {
    std::string refusal;
    if (!key_service)
      refusal = "this connection has no CURVE key the orchestrator's ZAP handler admitted";
    else if (!key_service->empty() && service != *key_service)
      refusal = "this peer's CURVE key is bound to service \"" + *key_service +
                "\"; it may not announce as \"" + printable(service) + "\"";
    else if (key_service->empty() && bound_services.contains(service))
      refusal = "service \"" + printable(service) +
                "\" takes only the CURVE keys bound to it; this peer's key is not one of them";
    if (!refusal.empty()) return refuse_announce(routing_id, std::move(raw), refusal);
  }
  refused.erase(routing_id);

  // A reconnected instance announces from a new routing id: the old connection is superseded.
  std::vector<std::string> superseded;
  for (const auto& [id, peer] : peers) {
    if (id != routing_id && peer.service == service && peer.instance == instance) {
      superseded.push_back(id);
    }
  }
  for (const auto& id : superseded) forget(id);
  if (auto it = peers.find(routing_id); it != peers.end() && it->second.service != service) {
    forget(routing_id);
  }

  auto [it, inserted] = peers.try_emplace(routing_id);
  Peer& peer = it->second;
  peer.service = service;
  peer.instance = instance;
  peer.key_service = key_service.value_or("");
  peer.alive = true;
  peer.last_seen = now;
  if (inserted) services[service].routing_ids.push_back(routing_id);

  const std::string welcome = nlohmann::json{{"protocol", kProtocolVersion},
                                             {"heartbeatMs", interval.count()},
                                             {"liveness", options.heartbeat_liveness}}
                                  .dump();
  switch (send_to(routing_id, {kWelcome, welcome})) {
    case Delivery::sent:
      peer.last_sent = now;
      break;
    case Delivery::would_block:
      break;
    case Delivery::unreachable:
      peer.alive = false;
      break;
  }
  return std::nullopt;
}

std::optional<InboundMessage> ZmqTransport::Impl::read_router() {
  zmq::message_t first;
  if (!router.recv(first, zmq::recv_flags::dontwait)) return std::nullopt;
  const std::string routing_id = first.to_string();

  // Keep the type and one argument; count the rest and keep a bounded copy for diagnostics.
  std::vector<std::string> kept;
  std::string tail;
  // With keys bound: the User-Id of the connection (the service its key is bound to, "" for any;
  // nullopt without one), read from the type frame (the routing-id frame is made locally).
  std::optional<std::string> key_service;
  std::size_t count = 0;
  for (bool more = first.more(); more;) {
    zmq::message_t part;
    if (!router.recv(part, zmq::recv_flags::dontwait)) break;  // parts arrive atomically
    more = part.more();
    if (keys_bound && kept.empty())
      if (const char* user_id = zmq_msg_gets(part.handle(), "User-Id")) key_service = user_id;
    if (kept.size() < 2) {
      kept.push_back(part.to_string());
    } else if (tail.size() < kMaxDefectBytes) {
      tail.append(part.to_string_view().substr(0, kMaxDefectBytes - tail.size()));
    }
    ++count;
  }
  auto raw = [&] {
    std::string bytes;
    for (const auto& frame : kept) bytes += frame;
    bytes += tail;
    if (bytes.size() > kMaxDefectBytes) bytes.resize(kMaxDefectBytes);
    return bytes;
  };

  const auto now = Clock::now();
  auto peer = peers.find(routing_id);
  // A routing id is the client's to choose: one that a peer with another key announced from
  // (and left, and has not been forgotten) is not that peer.
  if (keys_bound && peer != peers.end() && key_service != peer->second.key_service) {
    forget(routing_id);
    peer = peers.end();
  }
  if (peer != peers.end()) {
    peer->second.last_seen = now;
    peer->second.alive = true;  // any frame proves it alive
  }
  auto defect = [&](std::string_view code, std::string message) {
    send_error(routing_id, code, message);
    return InboundMessage{raw(), peer_name(routing_id), std::string(code), std::move(message)};
  };
  auto frame_count_defect = [&](std::string_view type, std::size_t expected) {
    return defect("bad_frames", std::string(type) + " with " + std::to_string(count - 1) +
                                    " frames after the type, expected " + std::to_string(expected));
  };

  if (count == 0) return defect("bad_frames", "message without a frame type");
  const std::string_view type = kept[0];
  if (type == kMessage) {
    if (count != 2) return frame_count_defect(type, 1);
    if (peer == peers.end())
      return InboundMessage{raw(), peer_name(routing_id), "not_announced",
                            tell_unannounced(routing_id, kMessage)};
    return InboundMessage{std::move(kept[1]), peer_name(routing_id), {}, {}, peer->second.service};
  }
  if (type == kHeartbeat) {
    if (count != 1) return frame_count_defect(type, 0);
    // A peer that is connected but unknown (e.g. after this orchestrator restarted) is told to
    // announce itself (an answer also keeps it from reconnecting); a heartbeat is not input for
    // the engine.
    if (peer == peers.end()) tell_unannounced(routing_id, kHeartbeat);
    return std::nullopt;
  }
  if (type == kAnnounce) {
    if (count != 2) return frame_count_defect(type, 1);
    return announce(routing_id, kept[1], raw(), now, key_service);
  }
  return defect("unknown_frame", "unknown frame type \"" + printable(type) + "\"");
}

void ZmqTransport::Impl::drain_wake() {
  zmq::message_t message;
  try {
    while (wake_receiver.recv(message, zmq::recv_flags::dontwait)) {
    }
  } catch (const zmq::error_t&) {
  }
}

std::unique_ptr<ZmqTransport> ZmqTransport::bind(const ZmqTransportOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  try {
    impl->setup();
  } catch (const zmq::error_t& error) {
    throw std::runtime_error(std::string("cannot set up the ZeroMQ transport: ") + error.what());
  }
  return std::unique_ptr<ZmqTransport>(new ZmqTransport(std::move(impl)));
}

ZmqTransport::ZmqTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ZmqTransport::~ZmqTransport() = default;

SendResult ZmqTransport::send(std::string_view destination, std::string_view bytes) {
  auto& s = *impl_;
  const auto now = Clock::now();
  s.housekeeping(now);
  auto service = s.services.find(destination);
  if (service == s.services.end()) return SendResult::unroutable;
  auto& ids = service->second.routing_ids;
  bool blocked = false;
  for (std::size_t tried = 0; tried < ids.size(); ++tried) {
    const std::size_t index = (service->second.next + tried) % ids.size();
    Peer& peer = s.peers.at(ids[index]);
    if (!peer.alive) continue;
    switch (s.send_to(ids[index], {kMessage, bytes})) {
      case Delivery::sent:
        peer.last_sent = now;
        service->second.next = (index + 1) % ids.size();
        return SendResult::sent;
      case Delivery::would_block:
        blocked = true;
        break;
      case Delivery::unreachable:
        peer.alive = false;
        break;
    }
  }
  return blocked ? SendResult::would_block : SendResult::unroutable;
}

std::optional<InboundMessage> ZmqTransport::receive(std::chrono::milliseconds wait) {
  auto& s = *impl_;
  // A message already queued is read without polling first: a turn drains many, and a poll per
  // message costs system calls. Control frames, and an empty queue, go through the poll below.
  // Heartbeats and liveness are kept up first, as in the poll loop: under inbound traffic that
  // never lets the queue empty, they would otherwise wait for the next send().
  s.housekeeping(Clock::now());
  try {
    if (auto message = s.read_router()) return message;
  } catch (const zmq::error_t&) {
  }
  const auto deadline = deadline_after(wait);
  int past_deadline = 0;
  while (true) {
    auto now = Clock::now();
    const auto until = std::min(deadline, s.housekeeping(now));
    const auto timeout = std::max(std::chrono::ceil<std::chrono::milliseconds>(until - now),
                                  std::chrono::milliseconds(0));
    zmq_pollitem_t items[] = {{s.wake_receiver.handle(), 0, ZMQ_POLLIN, 0},
                              {s.router.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, timeout);
    } catch (const zmq::error_t&) {
      items[0].revents = items[1].revents = 0;  // EINTR: go round again
    }
    if (items[0].revents & ZMQ_POLLIN) {
      s.drain_wake();
      return std::nullopt;
    }
    now = Clock::now();
    if (items[1].revents & ZMQ_POLLIN) {
      try {
        if (auto message = s.read_router()) return message;
      } catch (const zmq::error_t&) {
      }
      // Control traffic only: keep reading what is queued, but not forever past the deadline.
      if (now >= deadline && ++past_deadline > 1000) return std::nullopt;
      continue;
    }
    if (now >= deadline) return std::nullopt;
  }
}

void ZmqTransport::wake() {
  auto& s = *impl_;
  std::lock_guard lock(s.wake_mutex);
  try {
    // At the high-water mark a wake-up is already pending.
    (void)s.wake_sender.send(zmq::const_buffer(), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
  }
}

void ZmqTransport::publish(std::string_view event_type, std::string_view bytes) {
  auto& s = *impl_;
  if (!s.publisher) return;
  try {
    // PUB drops at its high-water mark instead of blocking: events are best effort.
    if (s.publisher.send(zmq::buffer(event_type),
                         zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      (void)s.publisher.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    }
  } catch (const zmq::error_t&) {
  }
}

bool ZmqTransport::has_observers() {
  auto& s = *impl_;
  if (!s.publisher) return false;
  try {
    zmq::message_t message;
    // Without XPUB_VERBOSE a topic's subscribe arrives from its first subscriber and its
    // unsubscribe after its last one has gone (unsubscribed or disconnected).
    while (s.publisher.recv(message, zmq::recv_flags::dontwait)) {
      if (message.size() == 0) continue;
      const auto* bytes = static_cast<const char*>(message.data());
      std::string topic(bytes + 1, message.size() - 1);
      if (bytes[0] == 1)
        s.subscriptions.insert(std::move(topic));
      else if (bytes[0] == 0)
        s.subscriptions.erase(topic);
    }
  } catch (const zmq::error_t&) {
  }
  return !s.subscriptions.empty();
}

std::string ZmqTransport::router_endpoint() const {
  return impl_->bound_router;
}

std::string ZmqTransport::events_endpoint() const {
  return impl_->bound_events;
}

std::vector<PeerInfo> ZmqTransport::peers() const {
  std::vector<PeerInfo> result;
  for (const auto& [routing_id, peer] : impl_->peers) {
    result.push_back({peer.service, peer.instance, peer.alive});
  }
  std::sort(result.begin(), result.end(), [](const PeerInfo& a, const PeerInfo& b) {
    return std::tie(a.service, a.instance) < std::tie(b.service, b.instance);
  });
  return result;
}

}  // namespace saga
