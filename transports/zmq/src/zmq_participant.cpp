#include "saga/zmq_participant.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "zmq_common.hpp"

namespace saga {
namespace {

using Clock = std::chrono::steady_clock;
using namespace zmq_detail;

struct ClientKeys {
  std::string server_public;
  std::string public_key;
  std::string secret_key;
};

}  // namespace

struct ZmqParticipantConnection::Impl {
  ~Impl() {
    dealer.close();
    if (keys) wipe(keys->secret_key);
  }

  void open();
  void reopen();
  bool send_parts(const std::vector<std::string_view>& frames);

  ZmqParticipantOptions options;
  std::chrono::milliseconds interval{};
  std::chrono::milliseconds dead_after{};
  std::string announce_body;
  std::optional<ClientKeys> keys;
  zmq::context_t context;
  zmq::socket_t dealer;
  Clock::time_point last_heard;
  Clock::time_point last_sent;
  bool welcomed = false;
};

void ZmqParticipantConnection::Impl::open() {
  try {
    dealer = zmq::socket_t(context, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 0);
    if (keys) {
      dealer.set(zmq::sockopt::curve_serverkey, keys->server_public);
      dealer.set(zmq::sockopt::curve_publickey, keys->public_key);
      dealer.set(zmq::sockopt::curve_secretkey, keys->secret_key);
    }
    dealer.connect(options.orchestrator_endpoint);
  } catch (const zmq::error_t& error) {
    dealer.close();
    throw std::runtime_error("cannot connect to '" + options.orchestrator_endpoint +
                             "': " + error.what());
  }
  welcomed = false;
  last_heard = Clock::now();  // a new connection gets a full liveness period
  send_parts({kAnnounce, announce_body});
}

// Paranoid Pirate: a silent orchestrator may have lost this connection; start a new one.
void ZmqParticipantConnection::Impl::reopen() {
  dealer.close();
  try {
    open();
  } catch (const std::runtime_error&) {
    last_heard = Clock::now();  // try again after another liveness period
  }
}

bool ZmqParticipantConnection::Impl::send_parts(const std::vector<std::string_view>& frames) {
  if (frames.empty() || !dealer) return false;
  try {
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const auto flags = i + 1 < frames.size()
                             ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                             : zmq::send_flags::dontwait;
      // Only the first part can fail with EAGAIN; the rest of a message is always accepted.
      if (!dealer.send(zmq::buffer(frames[i]), flags)) return false;
    }
  } catch (const zmq::error_t&) {
    return false;
  }
  last_sent = Clock::now();
  return true;
}

std::string default_instance_name(std::string_view service) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
    std::snprintf(host, sizeof host, "%s", "localhost");
  return std::string(service) + "-" + host + "-" + std::to_string(::getpid());
}

ZmqParticipantConnection::ZmqParticipantConnection(ZmqParticipantOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (options.service.empty())
    throw std::invalid_argument("ZmqParticipantOptions::service is empty");
  if (options.instance.empty()) {
    options.instance = default_instance_name(options.service);
  }
  auto& s = *impl_;
  s.interval = std::max(options.heartbeat_interval, std::chrono::milliseconds(1));
  s.dead_after = s.interval * std::max(options.heartbeat_liveness, 1);
  if (options.curve) {
    if (!zmq_has("curve")) throw std::runtime_error("libzmq was built without CURVE support");
    s.keys = ClientKeys{
        read_z85_key_file(options.curve->server_public_key_file, "CURVE server public key"),
        read_z85_key_file(options.curve->public_key_file, "CURVE public key"),
        read_z85_key_file(options.curve->secret_key_file, "CURVE secret key")};
  }
  s.announce_body = nlohmann::json{{"protocol", kProtocolVersion},
                                   {"service", options.service},
                                   {"instance", options.instance}}
                        .dump();
  s.options = std::move(options);
  s.open();
}

ZmqParticipantConnection::~ZmqParticipantConnection() = default;

std::optional<std::string> ZmqParticipantConnection::receive(std::chrono::milliseconds wait) {
  auto& s = *impl_;
  const auto deadline = deadline_after(wait);
  int past_deadline = 0;
  while (true) {
    auto now = Clock::now();
    if (now - s.last_sent >= s.interval && !s.send_parts({kHeartbeat})) s.last_sent = now;
    const auto until = std::min({deadline, s.last_sent + s.interval, s.last_heard + s.dead_after});
    const auto timeout = std::max(std::chrono::ceil<std::chrono::milliseconds>(until - now),
                                  std::chrono::milliseconds(0));
    if (!s.dealer) {  // a reconnect failed; try again after the liveness period
      std::this_thread::sleep_for(timeout);
      if (Clock::now() - s.last_heard >= s.dead_after) s.reopen();
      if (Clock::now() >= deadline) return std::nullopt;
      continue;
    }
    auto read_frames = [&] {
      std::vector<zmq::message_t> frames;
      try {
        if (!zmq::recv_multipart(s.dealer, std::back_inserter(frames), zmq::recv_flags::dontwait))
          frames.clear();
      } catch (const zmq::error_t&) {
        frames.clear();
      }
      return frames;
    };
    // A message already queued is read without polling first: a batch drains many, and a poll
    // per message costs system calls.
    std::vector<zmq::message_t> frames = read_frames();
    bool readable = !frames.empty();
    if (!readable) {
      zmq_pollitem_t items[] = {{s.dealer.handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 1, timeout);
      } catch (const zmq::error_t&) {
        items[0].revents = 0;
      }
      readable = (items[0].revents & ZMQ_POLLIN) != 0;
      if (readable) frames = read_frames();
    }
    now = Clock::now();
    if (readable) {
      if (!frames.empty()) {
        s.last_heard = now;  // any frame proves the orchestrator alive
        const std::string_view type = frames[0].to_string_view();
        if (type == kMessage && frames.size() == 2) return frames[1].to_string();
        if (type == kWelcome) {
          s.welcomed = true;
        } else if (type == kError && frames.size() == 2) {
          // The orchestrator does not know this connection (it restarted, or dropped and
          // re-accepted it): announce again.
          const auto error = nlohmann::json::parse(frames[1].to_string_view(), nullptr, false);
          if (error.is_object() && error.contains("code") && error["code"] == "not_announced") {
            s.welcomed = false;
            s.send_parts({kAnnounce, s.announce_body});
          }
        }
      }
      if (now >= deadline && ++past_deadline > 1000) return std::nullopt;
      continue;
    }
    // Only with nothing left to read: queued frames may still prove the orchestrator alive.
    if (now - s.last_heard >= s.dead_after) s.reopen();
    if (now >= deadline) return std::nullopt;
  }
}

bool ZmqParticipantConnection::send(const std::string& envelope_bytes) {
  return impl_->send_parts({kMessage, envelope_bytes});
}

bool ZmqParticipantConnection::send_frames(const std::vector<std::string>& frames) {
  return impl_->send_parts(std::vector<std::string_view>(frames.begin(), frames.end()));
}

bool ZmqParticipantConnection::connected() const {
  return impl_->welcomed && Clock::now() - impl_->last_heard < impl_->dead_after;
}

}  // namespace saga
