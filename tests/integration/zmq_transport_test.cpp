// The ZeroMQ transport over loopback TCP: announce and routing, round robin, liveness,
// refused framing, the size limit, events over PUB/SUB, and CURVE with a ZAP allow-list.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "saga/zmq_participant.hpp"
#include "saga/zmq_transport.hpp"

namespace saga {
// Readable SendResult in assertion messages.
void PrintTo(SendResult result, std::ostream* os) {
  *os << to_string(result);
}
}  // namespace saga

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kDeadline = 5s;
constexpr auto kHeartbeat = 50ms;

saga::ZmqTransportOptions transport_options() {
  saga::ZmqTransportOptions options;
  options.router_endpoint = "tcp://127.0.0.1:*";
  options.heartbeat_interval = kHeartbeat;
  options.heartbeat_liveness = 3;
  return options;
}

class ZmqTransportTest : public ::testing::Test {
 protected:
  void SetUp() override { bind(transport_options()); }

  void bind(const saga::ZmqTransportOptions& options) {
    transport.reset();
    transport = saga::ZmqTransport::bind(options);
  }

  saga::ZmqParticipantOptions participant_options(const std::string& service,
                                                  const std::string& instance) {
    saga::ZmqParticipantOptions options;
    options.orchestrator_endpoint = transport->router_endpoint();
    options.service = service;
    options.instance = instance;
    options.heartbeat_interval = kHeartbeat;
    options.heartbeat_liveness = 3;
    return options;
  }

  std::unique_ptr<saga::ZmqParticipantConnection> participant(const std::string& service,
                                                              const std::string& instance) {
    return std::make_unique<saga::ZmqParticipantConnection>(participant_options(service, instance));
  }

  // Runs the transport's receive() until `done` holds or the deadline passes; everything it
  // returned is kept in `inbound`.
  bool pump_until(const std::function<bool()>& done, std::chrono::milliseconds limit = kDeadline) {
    const auto deadline = Clock::now() + limit;
    while (!done()) {
      if (Clock::now() >= deadline) return false;
      if (auto message = transport->receive(10ms)) inbound.push_back(std::move(*message));
    }
    return true;
  }

  // Runs receive() for `duration` regardless (to show that nothing arrives).
  void pump_for(std::chrono::milliseconds duration) {
    pump_until([] { return false; }, duration);
  }

  std::optional<saga::PeerInfo> peer(const std::string& service, const std::string& instance) {
    for (const auto& info : transport->peers()) {
      if (info.service == service && info.instance == instance) return info;
    }
    return std::nullopt;
  }

  bool announced(const std::string& service, const std::string& instance) {
    return pump_until([&] {
      auto info = peer(service, instance);
      return info && info->alive;
    });
  }

  // Waits for the next inbound message, keeping the transport serviced.
  std::optional<saga::InboundMessage> next_inbound() {
    if (inbound.empty() && !pump_until([&] { return !inbound.empty(); })) return std::nullopt;
    auto message = std::move(inbound.front());
    inbound.erase(inbound.begin());
    return message;
  }

  // Waits for one command at a participant, keeping the transport serviced meanwhile.
  std::optional<std::string> next_command(saga::ZmqParticipantConnection& p,
                                          std::chrono::milliseconds limit = kDeadline) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      if (auto command = p.receive(10ms)) return command;
      if (auto message = transport->receive(0ms)) inbound.push_back(std::move(*message));
    }
    return std::nullopt;
  }

  std::unique_ptr<saga::ZmqTransport> transport;
  std::vector<saga::InboundMessage> inbound;
};

TEST_F(ZmqTransportTest, AnnouncedCommandReachesOnlyItsService) {
  auto inventory = participant("inventory", "inventory-1");
  auto payment = participant("payment", "payment-1");
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  ASSERT_TRUE(announced("payment", "payment-1"));

  EXPECT_EQ(transport->send("inventory", "reserve"), saga::SendResult::sent);
  EXPECT_EQ(next_command(*inventory), "reserve");
  EXPECT_TRUE(inventory->connected());  // WELCOME was processed on the way
  EXPECT_EQ(next_command(*payment, 200ms), std::nullopt);
  EXPECT_TRUE(inbound.empty());
}

// Frames past a few dozen bytes go to ZeroMQ in buffers the transport allocates, and ZeroMQ's I/O
// thread gives them back once written (SentBuffers in zmq_transport.cpp). Many commands, small
// and large, each with its own bytes, arrive whole and in order; destroying the transport with
// commands still queued for a participant that stopped reading gives their buffers back too
// (ASan's leak check covers that end).
TEST_F(ZmqTransportTest, ManySmallAndLargeCommandsArriveWholeAndInOrder) {
  auto inventory = participant("inventory", "inventory-1");
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  std::vector<std::string> sent;
  for (int i = 0; i < 1000; ++i) {
    const std::size_t size = i % 3 == 0 ? 10 + i % 50 : 65 + (i * 37) % 4000;
    std::string command(size, static_cast<char>('a' + i % 26));
    command.replace(0, std::min(size, std::to_string(i).size()), std::to_string(i));
    ASSERT_EQ(transport->send("inventory", command), saga::SendResult::sent) << i;
    sent.push_back(std::move(command));
  }
  for (std::size_t i = 0; i < sent.size(); ++i) {
    auto command = next_command(*inventory);
    ASSERT_TRUE(command.has_value()) << "command " << i << " did not arrive";
    ASSERT_EQ(*command, sent[i]) << "command " << i;
  }
  for (int i = 0; i < 100; ++i)  // left queued: the participant reads no more
    ASSERT_EQ(transport->send("inventory", std::string(500, 'q')), saga::SendResult::sent);
  transport.reset();
}

TEST_F(ZmqTransportTest, BindsEphemeralPortsAndReportsThem) {
  auto options = transport_options();
  options.router_endpoint = "tcp://127.0.0.1:0";
  options.events_endpoint = "tcp://127.0.0.1:*";
  bind(options);
  EXPECT_NE(transport->router_endpoint(), "tcp://127.0.0.1:0");
  EXPECT_EQ(transport->router_endpoint().rfind("tcp://127.0.0.1:", 0), 0u);
  EXPECT_EQ(transport->events_endpoint().rfind("tcp://127.0.0.1:", 0), 0u);

  options.router_endpoint = "nonsense://nowhere";
  EXPECT_THROW(saga::ZmqTransport::bind(options), std::runtime_error);
}

TEST_F(ZmqTransportTest, ParticipantDefaultsInstanceAndRejectsBadOptions) {
  auto inventory = participant("inventory", "");
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  const auto instance = "inventory-" + std::string(host) + "-" + std::to_string(::getpid());
  EXPECT_EQ(saga::default_instance_name("inventory"), instance);
  ASSERT_TRUE(announced("inventory", instance));

  auto bad = participant_options("inventory", "inventory-2");
  bad.orchestrator_endpoint = "nonsense://nowhere";
  EXPECT_THROW(saga::ZmqParticipantConnection{bad}, std::runtime_error);
  EXPECT_THROW(saga::ZmqParticipantConnection{participant_options("", "x")}, std::invalid_argument);
}

TEST_F(ZmqTransportTest, RoundRobinAcrossInstancesOfOneService) {
  auto first = participant("inventory", "inventory-1");
  auto second = participant("inventory", "inventory-2");
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  ASSERT_TRUE(announced("inventory", "inventory-2"));

  for (const char* command : {"c1", "c2", "c3", "c4"}) {
    ASSERT_EQ(transport->send("inventory", command), saga::SendResult::sent);
  }
  std::vector<std::string> got_first, got_second;
  for (int i = 0; i < 2; ++i) {
    auto a = next_command(*first);
    auto b = next_command(*second);
    ASSERT_TRUE(a && b);
    got_first.push_back(*a);
    got_second.push_back(*b);
  }
  // Alternation: one instance got c1 and c3, the other c2 and c4.
  std::vector<std::string> odd{"c1", "c3"}, even{"c2", "c4"};
  EXPECT_TRUE((got_first == odd && got_second == even) || (got_first == even && got_second == odd));
  EXPECT_EQ(next_command(*first, 100ms), std::nullopt);
  EXPECT_EQ(next_command(*second, 100ms), std::nullopt);
}

TEST_F(ZmqTransportTest, SendToServiceWithoutInstanceIsUnroutable) {
  auto inventory = participant("inventory", "inventory-1");
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  EXPECT_EQ(transport->send("shipping", "ship"), saga::SendResult::unroutable);
}

TEST_F(ZmqTransportTest, FullPeerQueueIsWouldBlockAndNeverBlocks) {
  auto options = transport_options();
  options.high_water_mark = 1;
  bind(options);
  auto inventory = participant("inventory", "inventory-1");  // never reads
  ASSERT_TRUE(announced("inventory", "inventory-1"));

  const std::string command(100 * 1024, 'c');
  std::optional<saga::SendResult> refused;
  for (int i = 0; i < 2000 && !refused; ++i) {
    const auto start = Clock::now();
    const auto result = transport->send("inventory", command);
    EXPECT_LT(Clock::now() - start, 100ms);
    if (result != saga::SendResult::sent) refused = result;
  }
  EXPECT_EQ(refused, saga::SendResult::would_block);
}

TEST_F(ZmqTransportTest, DestroyedParticipantBecomesDeadAndGetsNothing) {
  auto inventory = participant("inventory", "inventory-1");
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  inventory.reset();

  ASSERT_TRUE(pump_until([&] {
    auto info = peer("inventory", "inventory-1");
    return info && !info->alive;
  }));
  ASSERT_EQ(transport->peers().size(), 1u);  // still listed, as dead
  EXPECT_EQ(transport->send("inventory", "reserve"), saga::SendResult::unroutable);
}

// Every restart of a participant announces a new instance ("<service>-<host>-<pid>"): the dead ones
// used to stay in the peer table for ever.
TEST_F(ZmqTransportTest, PeersDeadForTenDeadPeriodsAreForgotten) {
  for (int i = 0; i < 3; ++i) {
    auto inventory = participant("inventory", "inventory-" + std::to_string(i));
    ASSERT_TRUE(announced("inventory", "inventory-" + std::to_string(i)));
  }
  ASSERT_EQ(transport->peers().size(), 3u);
  const auto started = Clock::now();
  ASSERT_TRUE(pump_until([&] { return transport->peers().empty(); }));
  EXPECT_GE(Clock::now() - started, kHeartbeat * 3 * 10 - kHeartbeat * 3);
  EXPECT_EQ(transport->send("inventory", "reserve"), saga::SendResult::unroutable);

  auto back = participant("inventory", "inventory-9");
  ASSERT_TRUE(announced("inventory", "inventory-9"));
  EXPECT_EQ(transport->send("inventory", "reserve"), saga::SendResult::sent);
  EXPECT_EQ(next_command(*back), "reserve");
}

TEST_F(ZmqTransportTest, SilentParticipantIsDeadUntilItSpeaksAgain) {
  auto inventory = participant("inventory", "inventory-1");
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  // The participant is connected but never runs receive(), so it sends no heartbeats.
  ASSERT_TRUE(pump_until([&] { return !peer("inventory", "inventory-1")->alive; }));
  EXPECT_EQ(transport->send("inventory", "reserve"), saga::SendResult::unroutable);

  // Once it heartbeats again it is alive and gets commands.
  const auto deadline = Clock::now() + kDeadline;
  while (!peer("inventory", "inventory-1")->alive && Clock::now() < deadline) {
    (void)inventory->receive(10ms);
    (void)transport->receive(10ms);
  }
  ASSERT_TRUE(peer("inventory", "inventory-1")->alive);
  EXPECT_EQ(transport->send("inventory", "reserve"), saga::SendResult::sent);
  EXPECT_EQ(next_command(*inventory), "reserve");
}

TEST_F(ZmqTransportTest, ParticipantReconnectsWhenOrchestratorIsSilent) {
  auto inventory = participant("inventory", "inventory-1");
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  const auto deadline = Clock::now() + kDeadline;
  while (!inventory->connected() && Clock::now() < deadline) (void)inventory->receive(10ms);
  ASSERT_TRUE(inventory->connected());

  // The transport is not serviced, so it sends no heartbeats: the participant gives up on this
  // connection, opens a new one and announces again.
  while (inventory->connected() && Clock::now() < deadline) (void)inventory->receive(10ms);
  ASSERT_FALSE(inventory->connected());

  while (!inventory->connected() && Clock::now() < deadline) {
    (void)inventory->receive(10ms);
    if (auto message = transport->receive(10ms)) inbound.push_back(std::move(*message));
  }
  ASSERT_TRUE(inventory->connected());
  const auto peers = transport->peers();  // the new connection replaced the old one
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_TRUE(peers[0].alive);
  EXPECT_EQ(transport->send("inventory", "reserve"), saga::SendResult::sent);
  EXPECT_EQ(next_command(*inventory), "reserve");
  EXPECT_TRUE(inventory->connected());
}

// receive() takes a queued message without polling; it must still keep heartbeats and liveness
// up while a backlog never lets the queue run empty and nothing is sent.
TEST_F(ZmqTransportTest, IdleParticipantHearsHeartbeatsWhileTheTransportReadsABacklog) {
  auto idle = participant("payment", "payment-1");
  auto busy = participant("inventory", "inventory-1");
  ASSERT_TRUE(announced("payment", "payment-1"));
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  const auto deadline = Clock::now() + kDeadline;
  while (!idle->connected() && Clock::now() < deadline) (void)idle->receive(10ms);
  ASSERT_TRUE(idle->connected());

  constexpr int kBacklog = 60;  // read one per 10 ms: four liveness periods (3 x 50 ms)
  for (int i = 0; i < kBacklog; ++i) ASSERT_TRUE(busy->send("reply-" + std::to_string(i)));
  std::this_thread::sleep_for(20ms);  // queued at the transport
  int read = 0;
  for (int i = 0; i < kBacklog; ++i) {
    std::this_thread::sleep_for(10ms);
    if (auto message = transport->receive(0ms); message && message->defect_code.empty()) ++read;
    (void)idle->receive(0ms);  // takes the heartbeats the transport sent it
    ASSERT_TRUE(idle->connected()) << "silent for a liveness period after " << i << " reads";
  }
  EXPECT_GE(read, kBacklog - 5);  // the busy peer's own heartbeats may take a turn or two
}

TEST_F(ZmqTransportTest, ReplyFromParticipantArrivesViaReceive) {
  auto inventory = participant("inventory", "inventory-1");
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  ASSERT_TRUE(inventory->send(R"({"eventType":"inventory.Reserved"})"));
  auto message = next_inbound();
  ASSERT_TRUE(message);
  EXPECT_EQ(message->bytes, R"({"eventType":"inventory.Reserved"})");
  EXPECT_EQ(message->peer, "inventory/inventory-1");
  EXPECT_TRUE(message->defect_code.empty());
}

TEST_F(ZmqTransportTest, WakeFromAnotherThreadInterruptsReceive) {
  std::thread waker([&] {
    std::this_thread::sleep_for(50ms);
    transport->wake();
  });
  const auto start = Clock::now();
  auto message = transport->receive(5s);
  const auto elapsed = Clock::now() - start;
  waker.join();
  EXPECT_FALSE(message);
  EXPECT_LT(elapsed, 1s);

  // A wake-up before receive() makes the next receive() return at once.
  transport->wake();
  transport->wake();
  const auto again = Clock::now();
  EXPECT_FALSE(transport->receive(5s));
  EXPECT_LT(Clock::now() - again, 1s);
}

class ZmqFramingTest : public ZmqTransportTest {
 protected:
  void SetUp() override {
    ZmqTransportTest::SetUp();
    offender = participant("inventory", "inventory-1");
    good = participant("payment", "payment-1");
    ASSERT_TRUE(announced("inventory", "inventory-1"));
    ASSERT_TRUE(announced("payment", "payment-1"));
  }

  void expect_defect(const std::string& code, const std::string& raw, const std::string& peer) {
    auto message = next_inbound();
    ASSERT_TRUE(message);
    EXPECT_EQ(message->defect_code, code);
    EXPECT_FALSE(message->defect.empty());
    EXPECT_EQ(message->bytes, raw);
    EXPECT_EQ(message->peer, peer);
  }

  // Both the offender and a well-behaved participant are still served both ways.
  void expect_still_served() {
    ASSERT_TRUE(offender->send("from-offender"));
    ASSERT_TRUE(good->send("from-good"));
    std::vector<std::string> got;
    for (int i = 0; i < 2; ++i) {
      auto message = next_inbound();
      ASSERT_TRUE(message);
      EXPECT_TRUE(message->defect_code.empty());
      got.push_back(message->bytes);
    }
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, (std::vector<std::string>{"from-good", "from-offender"}));
    ASSERT_EQ(transport->send("payment", "charge"), saga::SendResult::sent);
    EXPECT_EQ(next_command(*good), "charge");
  }

  std::unique_ptr<saga::ZmqParticipantConnection> offender;
  std::unique_ptr<saga::ZmqParticipantConnection> good;
};

TEST_F(ZmqFramingTest, MessageWithExtraFrameIsBadFrames) {
  ASSERT_TRUE(offender->send_frames({"MESSAGE", "one", "two"}));
  expect_defect("bad_frames", "MESSAGEonetwo", "inventory/inventory-1");
  expect_still_served();
}

TEST_F(ZmqFramingTest, UnknownFrameTypeIsUnknownFrame) {
  ASSERT_TRUE(offender->send_frames({"BOGUS", "x"}));
  expect_defect("unknown_frame", "BOGUSx", "inventory/inventory-1");
  expect_still_served();
}

TEST_F(ZmqFramingTest, SingleFrameMessageIsBadFrames) {
  ASSERT_TRUE(offender->send_frames({"MESSAGE"}));
  expect_defect("bad_frames", "MESSAGE", "inventory/inventory-1");
  expect_still_served();
}

TEST_F(ZmqFramingTest, MessageBeforeAnnounceIsNotAnnounced) {
  zmq::context_t context;
  zmq::socket_t raw(context, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(transport->router_endpoint());
  std::array<zmq::const_buffer, 2> frames{zmq::str_buffer("MESSAGE"), zmq::str_buffer("early")};
  ASSERT_TRUE(zmq::send_multipart(raw, frames));

  auto message = next_inbound();
  ASSERT_TRUE(message);
  EXPECT_EQ(message->defect_code, "not_announced");
  EXPECT_EQ(message->bytes, "MESSAGEearly");
  EXPECT_EQ(message->peer.rfind("unannounced peer ", 0), 0u);

  // The raw peer is told why, in an ERROR frame.
  zmq_pollitem_t items[] = {{raw.handle(), 0, ZMQ_POLLIN, 0}};
  ASSERT_EQ(zmq::poll(items, 1, std::chrono::milliseconds(kDeadline)), 1);
  std::vector<zmq::message_t> reply;
  ASSERT_TRUE(zmq::recv_multipart(raw, std::back_inserter(reply)));
  ASSERT_EQ(reply.size(), 2u);
  EXPECT_EQ(reply[0].to_string(), "ERROR");
  EXPECT_EQ(nlohmann::json::parse(reply[1].to_string()).at("code"), "not_announced");
  EXPECT_TRUE(transport->peers().size() == 2u);
  expect_still_served();
}

TEST_F(ZmqFramingTest, BadAnnounceIsRefused) {
  ASSERT_TRUE(offender->send_frames({"ANNOUNCE", "not json"}));
  expect_defect("bad_announce", "ANNOUNCEnot json", "inventory/inventory-1");
  expect_still_served();
}

TEST_F(ZmqTransportTest, OversizedMessageDisconnectsSenderButOthersAreServed) {
  auto options = transport_options();
  options.max_message_bytes = 1024;
  options.heartbeat_liveness = 1000;  // only the disconnect, not silence, can make `big` dead
  bind(options);
  auto big_options = participant_options("big", "big-1");
  big_options.heartbeat_liveness = 1000;  // recovers through ERROR "not_announced", not a timeout
  auto big = std::make_unique<saga::ZmqParticipantConnection>(big_options);
  auto small = participant("small", "small-1");
  ASSERT_TRUE(announced("big", "big-1"));
  ASSERT_TRUE(announced("small", "small-1"));

  ASSERT_TRUE(big->send(std::string(4096, 'x')));
  // libzmq drops the connection; the next heartbeat to the announced routing id fails.
  ASSERT_TRUE(pump_until([&] { return !peer("big", "big-1")->alive; }));
  EXPECT_EQ(transport->send("big", "command"), saga::SendResult::unroutable);

  ASSERT_TRUE(small->send("hello"));
  auto message = next_inbound();
  ASSERT_TRUE(message);
  EXPECT_EQ(message->bytes, "hello");
  ASSERT_EQ(transport->send("small", "command"), saga::SendResult::sent);
  EXPECT_EQ(next_command(*small), "command");
  for (const auto& m : inbound) EXPECT_NE(m.bytes.size(), 4096u);

  // The sender's socket reconnected by itself; told it is unknown, it announces again.
  const auto deadline = Clock::now() + kDeadline;
  while (!peer("big", "big-1")->alive && Clock::now() < deadline) {
    (void)big->receive(10ms);
    if (auto m = transport->receive(10ms)) inbound.push_back(std::move(*m));
  }
  ASSERT_EQ(transport->send("big", "again"), saga::SendResult::sent);
  EXPECT_EQ(next_command(*big), "again");
  for (const auto& m : inbound) EXPECT_NE(m.bytes.size(), 4096u);
}

TEST_F(ZmqTransportTest, PublishReachesSubscriber) {
  auto options = transport_options();
  options.events_endpoint = "tcp://127.0.0.1:*";
  bind(options);

  zmq::context_t context;
  zmq::socket_t subscriber(context, zmq::socket_type::sub);
  subscriber.set(zmq::sockopt::linger, 0);
  subscriber.set(zmq::sockopt::subscribe, "order.");
  subscriber.connect(transport->events_endpoint());

  // PUB/SUB drops what is published before the subscription arrives: publish until one lands.
  std::vector<zmq::message_t> event;
  const auto deadline = Clock::now() + kDeadline;
  while (event.empty() && Clock::now() < deadline) {
    transport->publish("other.Ignored", "{}");
    transport->publish("order.Completed", R"({"kind":"event"})");
    zmq_pollitem_t items[] = {{subscriber.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items, 1, 20ms) > 0) {
      ASSERT_TRUE(zmq::recv_multipart(subscriber, std::back_inserter(event)));
    }
  }
  ASSERT_EQ(event.size(), 2u);
  EXPECT_EQ(event[0].to_string(), "order.Completed");
  EXPECT_EQ(event[1].to_string(), R"({"kind":"event"})");
}

TEST_F(ZmqTransportTest, PublishWithoutEventsEndpointIsANoOp) {
  EXPECT_TRUE(transport->events_endpoint().empty());
  EXPECT_FALSE(transport->has_observers());
  transport->publish("order.Completed", "{}");
}

TEST_F(ZmqTransportTest, HasObserversWhileASubscriptionIsOpen) {
  auto options = transport_options();
  options.events_endpoint = "tcp://127.0.0.1:*";
  bind(options);
  EXPECT_FALSE(transport->has_observers());

  auto wait_for = [&](bool expected) {
    const auto deadline = Clock::now() + kDeadline;
    while (transport->has_observers() != expected && Clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    return transport->has_observers() == expected;
  };
  zmq::context_t context;
  {
    zmq::socket_t subscriber(context, zmq::socket_type::sub);
    subscriber.set(zmq::sockopt::linger, 0);
    subscriber.set(zmq::sockopt::subscribe, "saga.");
    subscriber.connect(transport->events_endpoint());
    EXPECT_TRUE(wait_for(true)) << "the subscription never arrived";
    zmq::socket_t second(context, zmq::socket_type::sub);
    second.set(zmq::sockopt::linger, 0);
    second.set(zmq::sockopt::subscribe, "saga.");
    second.connect(transport->events_endpoint());
    second.close();
    std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(transport->has_observers()) << "the first subscriber is still there";
  }
  EXPECT_TRUE(wait_for(false)) << "the last subscriber left, but observers are still reported";
}

struct KeyPair {
  std::string public_file;
  std::string secret_file;
};

class ZmqCurveTest : public ZmqTransportTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(zmq_has("curve")) << "libzmq lacks CURVE";
    directory = std::filesystem::temp_directory_path() /
                ("saga-zmq-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(directory);
    std::filesystem::create_directories(directory);
    server = make_keys("server");
    listed = make_keys("listed");
    unlisted = make_keys("unlisted");

    auto options = transport_options();
    options.curve = saga::CurveServerOptions{server.secret_file, {listed.public_file}};
    transport = saga::ZmqTransport::bind(options);
  }
  void TearDown() override {
    transport.reset();
    std::filesystem::remove_all(directory);
  }

  KeyPair make_keys(const std::string& name) {
    char public_key[41] = {};
    char secret_key[41] = {};
    EXPECT_EQ(zmq_curve_keypair(public_key, secret_key), 0);
    KeyPair pair{(directory / (name + ".pub")).string(), (directory / (name + ".key")).string()};
    std::ofstream(pair.public_file) << public_key << "\n";  // whitespace is ignored
    std::ofstream(pair.secret_file) << "  " << secret_key << "\n";
    return pair;
  }

  std::unique_ptr<saga::ZmqParticipantConnection> curve_participant(const std::string& service,
                                                                    const KeyPair& keys) {
    auto options = participant_options(service, service + "-1");
    options.curve =
        saga::CurveClientOptions{server.public_file, keys.public_file, keys.secret_file};
    return std::make_unique<saga::ZmqParticipantConnection>(options);
  }

  // A DEALER with `keys` and a routing id of its own choosing, as a client other than the SDK
  // may have: announces as `service`/`instance` when `service` is not empty.
  zmq::socket_t raw_curve_peer(const KeyPair& keys, const std::string& routing_id,
                               const std::string& service, const std::string& instance) {
    auto key = [](const std::string& file) {
      std::string text;
      std::ifstream(file) >> text;
      return text;
    };
    zmq::socket_t dealer(raw_context, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::routing_id, routing_id);
    dealer.set(zmq::sockopt::curve_serverkey, key(server.public_file));
    dealer.set(zmq::sockopt::curve_publickey, key(keys.public_file));
    dealer.set(zmq::sockopt::curve_secretkey, key(keys.secret_file));
    dealer.connect(transport->router_endpoint());
    if (!service.empty()) {
      const std::string body =
          nlohmann::json{{"protocol", 1}, {"service", service}, {"instance", instance}}.dump();
      const std::array<zmq::const_buffer, 2> frames{zmq::str_buffer("ANNOUNCE"), zmq::buffer(body)};
      EXPECT_TRUE(zmq::send_multipart(dealer, frames));
    }
    return dealer;
  }

  std::filesystem::path directory;
  KeyPair server, listed, unlisted;
  zmq::context_t raw_context;
};

TEST_F(ZmqCurveTest, ListedKeyExchangesMessages) {
  auto inventory = curve_participant("inventory", listed);
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  ASSERT_EQ(transport->send("inventory", "reserve"), saga::SendResult::sent);
  EXPECT_EQ(next_command(*inventory), "reserve");
  ASSERT_TRUE(inventory->send("reserved"));
  auto message = next_inbound();
  ASSERT_TRUE(message);
  EXPECT_EQ(message->bytes, "reserved");
  EXPECT_EQ(message->peer, "inventory/inventory-1");
}

TEST_F(ZmqCurveTest, UnlistedKeyAndPlainParticipantGetNothingThrough) {
  auto intruder = curve_participant("intruder", unlisted);
  auto plain = participant("plain", "plain-1");
  auto inventory = curve_participant("inventory", listed);
  // Whether these sends are even queued is a race: once the refused handshake has dropped the
  // connection, the DEALER has no pipe to queue on. Either way nothing may reach the engine.
  (void)intruder->send("from-intruder");
  (void)plain->send("from-plain");
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  ASSERT_TRUE(inventory->send("from-listed"));

  pump_for(300ms);
  ASSERT_EQ(inbound.size(), 1u);
  EXPECT_EQ(inbound[0].bytes, "from-listed");
  const auto peers = transport->peers();
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_EQ(peers[0].service, "inventory");
  EXPECT_EQ(transport->send("intruder", "x"), saga::SendResult::unroutable);
  EXPECT_EQ(transport->send("plain", "x"), saga::SendResult::unroutable);
  EXPECT_EQ(intruder->receive(50ms), std::nullopt);
  EXPECT_FALSE(intruder->connected());
  EXPECT_FALSE(plain->connected());
}

TEST_F(ZmqCurveTest, KeyBoundToAServiceAnnouncesAsThatServiceOnly) {
  const KeyPair payment_key = make_keys("payment");
  auto options = transport_options();
  options.curve = saga::CurveServerOptions{
      server.secret_file, {listed.public_file}, {{"payment", {payment_key.public_file}}}};
  bind(options);

  auto impostor_options = participant_options("inventory", "inventory-1");
  impostor_options.curve = saga::CurveClientOptions{server.public_file, payment_key.public_file,
                                                    payment_key.secret_file};
  impostor_options.heartbeat_liveness = 20;  // a stalled test thread must not make it reconnect
  auto impostor = std::make_unique<saga::ZmqParticipantConnection>(impostor_options);
  auto refused = next_inbound();
  ASSERT_TRUE(refused) << "the impostor's ANNOUNCE never came back as a defect";
  EXPECT_EQ(refused->defect_code, "bad_announce");
  EXPECT_NE(refused->defect.find("bound to service \"payment\""), std::string::npos)
      << refused->defect;
  EXPECT_EQ(refused->defect.find(payment_key.public_file), std::string::npos);
  EXPECT_FALSE(peer("inventory", "inventory-1"));
  EXPECT_EQ(transport->send("inventory", "reserve"), saga::SendResult::unroutable);
  // Its heartbeats are answered, but not with "not_announced", which would make it announce
  // again; nor left unanswered, which would make it reconnect and announce again. One dead
  // letter per connection, not one per heartbeat (the impostor's receive() runs its protocol).
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(impostor->receive(kHeartbeat / 2), std::nullopt);
    pump_for(kHeartbeat / 2);
  }
  EXPECT_EQ(
      std::count_if(inbound.begin(), inbound.end(),
                    [](const auto& message) { return message.defect_code == "bad_announce"; }),
      0);

  auto payment = curve_participant("payment", payment_key);
  ASSERT_TRUE(announced("payment", "payment-1"));
  ASSERT_EQ(transport->send("payment", "charge"), saga::SendResult::sent);
  EXPECT_EQ(next_command(*payment), "charge");
  ASSERT_TRUE(payment->send("charged"));
  auto is_charged = [](const saga::InboundMessage& message) { return message.bytes == "charged"; };
  ASSERT_TRUE(pump_until([&] { return std::any_of(inbound.begin(), inbound.end(), is_charged); }));
  EXPECT_EQ(std::find_if(inbound.begin(), inbound.end(), is_charged)->sender_service, "payment")
      << "the engine checks replies against their commands' destinations by this";

  // A key listed for any service may announce as one without bound keys, not as "payment",
  // which takes only its own.
  auto inventory = curve_participant("inventory", listed);
  ASSERT_TRUE(announced("inventory", "inventory-1"));
  ASSERT_EQ(transport->send("inventory", "reserve"), saga::SendResult::sent);
  EXPECT_EQ(next_command(*inventory), "reserve");
  inbound.clear();
  auto other_payment = curve_participant("payment", listed);
  auto refused_too = next_inbound();
  ASSERT_TRUE(refused_too);
  EXPECT_EQ(refused_too->defect_code, "bad_announce");
  EXPECT_NE(refused_too->defect.find("takes only the CURVE keys bound to it"), std::string::npos)
      << refused_too->defect;
  ASSERT_EQ(transport->peers().size(), 2u) << "payment-1 and inventory-1, no one else";
}

// A routing id is the client's to choose (ZMQ_ROUTING_ID), and an announced peer is remembered by
// it for a while after it leaves. Another connection taking that id is not taken for the peer:
// every message is held to the key the peer announced with.
TEST_F(ZmqCurveTest, RoutingIdReusedByAnotherKeyIsNotTakenForItsPeer) {
  const KeyPair payment_key = make_keys("payment");
  const KeyPair inventory_key = make_keys("inventory");
  auto options = transport_options();
  options.curve = saga::CurveServerOptions{
      server.secret_file,
      {},
      {{"payment", {payment_key.public_file}}, {"inventory", {inventory_key.public_file}}}};
  bind(options);
  {
    zmq::socket_t payment = raw_curve_peer(payment_key, "chosen-id", "payment", "payment-1");
    ASSERT_TRUE(announced("payment", "payment-1"));
  }  // closed; the transport still lists payment-1 until it is forgotten
  // Dead once a heartbeat to it fails: the ROUTER has let its routing id go.
  ASSERT_TRUE(pump_until([&] {
    auto info = peer("payment", "payment-1");
    return info && !info->alive;
  }));
  inbound.clear();

  zmq::socket_t intruder = raw_curve_peer(inventory_key, "chosen-id", "", "");
  const std::array<zmq::const_buffer, 2> frames{zmq::str_buffer("MESSAGE"),
                                                zmq::str_buffer("forged")};
  ASSERT_TRUE(zmq::send_multipart(intruder, frames));
  auto message = next_inbound();
  ASSERT_TRUE(message);
  EXPECT_EQ(message->defect_code, "not_announced") << "taken for payment-1: " << message->bytes;
  EXPECT_TRUE(message->sender_service.empty());
  EXPECT_FALSE(peer("payment", "payment-1")) << "the old registration is forgotten";
  EXPECT_EQ(transport->send("payment", "charge"), saga::SendResult::unroutable);
}

TEST_F(ZmqCurveTest, KeyListedTwiceOrForAnUnnamedServiceIsRefused) {
  auto options = transport_options();
  options.curve = saga::CurveServerOptions{
      server.secret_file, {listed.public_file}, {{"payment", {listed.public_file}}}};
  EXPECT_THROW(saga::ZmqTransport::bind(options), std::runtime_error);
  options.curve = saga::CurveServerOptions{
      server.secret_file,
      {},
      {{"payment", {listed.public_file}}, {"shipping", {listed.public_file}}}};
  EXPECT_THROW(saga::ZmqTransport::bind(options), std::runtime_error);
  options.curve = saga::CurveServerOptions{server.secret_file, {}, {{"", {listed.public_file}}}};
  EXPECT_THROW(saga::ZmqTransport::bind(options), std::runtime_error);
}

TEST_F(ZmqCurveTest, UnreadableOrMalformedKeyFilesAreRefused) {
  auto options = transport_options();
  options.curve = saga::CurveServerOptions{(directory / "missing.key").string(), {}};
  EXPECT_THROW(saga::ZmqTransport::bind(options), std::runtime_error);

  const auto bad = (directory / "bad.key").string();
  std::ofstream(bad) << "too short\n";
  options.curve = saga::CurveServerOptions{server.secret_file, {bad}};
  EXPECT_THROW(saga::ZmqTransport::bind(options), std::runtime_error);

  auto client = participant_options("inventory", "inventory-1");
  client.curve = saga::CurveClientOptions{server.public_file, listed.public_file, bad};
  EXPECT_THROW(saga::ZmqParticipantConnection{client}, std::runtime_error);
}

}  // namespace
