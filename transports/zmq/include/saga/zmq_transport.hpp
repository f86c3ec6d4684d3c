// The ZeroMQ transport (cppzmq). The orchestrator binds a ROUTER socket; participant instances
// connect DEALER sockets (saga/zmq_participant.hpp), announce their service and instance, and
// exchange heartbeats. The framing is specified in docs/wire-protocol.md ("ZeroMQ framing").
//
// - send(destination, bytes) picks a live instance of the service `destination`, round robin.
//   No live instance: SendResult::unroutable. The peer's queue is full (high-water mark):
//   SendResult::would_block. ZMQ_ROUTER_MANDATORY is on, so a send to a peer that vanished is
//   reported (unroutable), never silently dropped. send() never blocks.
// - receive() returns envelopes from participants (MESSAGE frames). ANNOUNCE and HEARTBEAT are
//   handled inside; input that breaks the framing comes back as an InboundMessage with
//   defect_code set ("bad_frames", "unknown_frame", "not_announced", "bad_announce"), for the
//   engine to dead-letter. ZMQ_MAXMSGSIZE is set: libzmq disconnects a peer that sends a larger
//   frame. It bounds frames, not messages: libzmq hands over a multipart message only once its
//   last frame is in, and holds its frames meanwhile, so a peer that sends frames without end
//   grows the orchestrator's memory until it stops (docs/wire-protocol.md, "Size limit"). Keep
//   CURVE on where peers are not trusted.
// - An instance that sends nothing for heartbeat_interval * heartbeat_liveness is dead: it gets
//   no new commands. Commands it held are re-sent by the engine after their timeout. Any frame
//   makes it alive again. Dead for ten times that, it is forgotten (peers() no longer lists it):
//   its next MESSAGE is a "not_announced" defect, and its next heartbeat is answered with an
//   ERROR that makes it announce itself again.
// - publish() sends an event envelope on the XPUB socket (when events_endpoint is set); the
//   engine encodes events only while someone is subscribed (has_observers()).
// - Optional CURVE: with curve set, the ROUTER is a CURVE server and a ZAP handler admits only
//   the listed client public keys; other peers cannot send anything that reaches receive(). A key
//   listed for a service (CurveServerOptions::service_key_files) may announce as that service
//   only: its ANNOUNCE under another name is refused ("bad_announce", an ERROR to the peer and an
//   InboundMessage to dead-letter), so the peer never gets that service's commands.
//
// Ownership: owns its zmq context and sockets; the destructor closes them (linger 0) and never
// throws. Thread safety: send/receive/publish from the engine loop thread only; wake() from any
// thread. Errors: bind() throws std::runtime_error when an endpoint cannot be bound or a key
// file cannot be read; nothing else throws for network conditions.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saga/transport.hpp"

namespace saga {

struct CurveServerOptions {
  // File holding the server's secret key (Z85, 40 characters; whitespace ignored). Never logged.
  std::string secret_key_file = {};
  // Files each holding one allowed participant public key (Z85, 40 characters). A peer with one
  // of these keys may announce as any service without bound keys: each is trusted as every
  // participant is.
  std::vector<std::string> allowed_client_key_files = {};
  // Keys bound to a service: service name -> files each holding one public key. A peer with one
  // of these keys is admitted, and may announce only as that service; a service listed here
  // takes only its own keys (a key of allowed_client_key_files may not announce as it). Every
  // message is checked against the binding of the key its peer announced with, so a routing id
  // reused by a connection with a key of another binding is not taken for that peer (a silent
  // one still gets that peer's commands until it is declared dead: docs/wire-protocol.md). A key
  // listed both for two services, or here and in allowed_client_key_files, makes bind() throw
  // std::runtime_error, as does an empty service name.
  std::map<std::string, std::vector<std::string>> service_key_files = {};
};

struct ZmqTransportOptions {
  // ROUTER endpoint to bind. Port 0 or "*" picks an ephemeral port; see router_endpoint().
  // Default: "tcp://127.0.0.1:5555".
  std::string router_endpoint = "tcp://127.0.0.1:5555";
  // PUB endpoint for saga lifecycle events; empty disables publishing. Default: empty.
  std::string events_endpoint = {};
  // Heartbeat period and how many silent periods make a peer dead. Default: 1 s, 3.
  std::chrono::milliseconds heartbeat_interval{1000};
  int heartbeat_liveness = 3;
  // ZMQ_MAXMSGSIZE on the ROUTER: a larger inbound frame disconnects its sender.
  // Default: 1 MiB + 4 KiB (an envelope of the default limit plus framing).
  std::size_t max_message_bytes = 1024 * 1024 + 4096;
  // ZMQ_SNDHWM / ZMQ_RCVHWM per peer. Default: 10000 messages.
  int high_water_mark = 10000;
  // CURVE security; nullopt = plain TCP. Default: nullopt.
  std::optional<CurveServerOptions> curve = std::nullopt;
};

struct PeerInfo {
  std::string service;
  std::string instance;
  bool alive = false;
};

class ZmqTransport final : public Transport {
 public:
  static std::unique_ptr<ZmqTransport> bind(const ZmqTransportOptions& options);
  ~ZmqTransport() override;

  SendResult send(std::string_view destination, std::string_view bytes) override;
  std::optional<InboundMessage> receive(std::chrono::milliseconds wait) override;
  void wake() override;

  // Publishes one event envelope to subscribers, best effort (no-op without events_endpoint;
  // dropped at the high-water mark).
  void publish(std::string_view event_type, std::string_view bytes) override;
  // True while at least one subscription is open on the events endpoint (the XPUB socket's
  // subscription messages, read without blocking on each call).
  bool has_observers() override;

  // The endpoints actually bound (ephemeral ports resolved), e.g. "tcp://127.0.0.1:40123".
  std::string router_endpoint() const;
  std::string events_endpoint() const;
  std::vector<PeerInfo> peers() const;

 private:
  struct Impl;
  explicit ZmqTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace saga
