// The participant side of the ZeroMQ transport: one DEALER connection to an orchestrator's
// ROUTER, speaking the framing of docs/wire-protocol.md. It announces itself on connect (and
// again after a reconnect), sends heartbeats when idle, and detects a silent orchestrator.
// The participant SDK (saga/participant.hpp) builds on it; use it directly to write a
// participant by hand or to test the orchestrator.
//
// Thread safety: one thread at a time. Errors: the constructor throws std::runtime_error for a
// bad endpoint or unreadable key file; send() returns false when the message cannot be queued.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace saga {

struct CurveClientOptions {
  std::string server_public_key_file = {};  // the orchestrator's public key (Z85)
  std::string public_key_file = {};         // this participant's key pair (Z85)
  std::string secret_key_file = {};
};

// "<service>-<host name>-<pid>": distinct for processes on one host and across containers,
// whose processes often share a pid (1) but not a host name.
std::string default_instance_name(std::string_view service);

struct ZmqParticipantOptions {
  std::string orchestrator_endpoint = "tcp://127.0.0.1:5555";
  std::string service = {};  // required, e.g. "inventory"
  // Unique among the live instances of the service: an ANNOUNCE under the name of a live
  // instance supersedes it (a restarted instance takes its place at once). Default:
  // default_instance_name(service).
  std::string instance = {};
  std::chrono::milliseconds heartbeat_interval{1000};
  int heartbeat_liveness = 3;
  std::optional<CurveClientOptions> curve = std::nullopt;
};

class ZmqParticipantConnection {
 public:
  explicit ZmqParticipantConnection(ZmqParticipantOptions options);
  ~ZmqParticipantConnection();

  // Waits up to `wait` for one command envelope (MESSAGE frame). Heartbeats and WELCOME are
  // handled inside; nullopt when nothing arrived.
  std::optional<std::string> receive(std::chrono::milliseconds wait);
  // Sends one envelope (a reply) as a MESSAGE frame.
  bool send(const std::string& envelope_bytes);
  // Sends raw frames as given (tests of the orchestrator's framing checks).
  bool send_frames(const std::vector<std::string>& frames);
  // True once the orchestrator answered the announce with WELCOME and has not gone silent.
  bool connected() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace saga
