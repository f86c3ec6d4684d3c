// Serves a metrics registry (saga/metrics.hpp) over HTTP for Prometheus to scrape. Built on
// cpp-httplib (Debian's libcpp-httplib-dev) and kept out of the engine library: link
// saga::metrics_http only where an endpoint is wanted (the engine itself never opens a port).
//
//   auto server = saga::MetricsHttpServer::start(metrics, {"127.0.0.1", 9464});  // 0: any port
//   std::cout << "metrics on port " << server->port() << "\n";
//   ...
//   server->stop();  // also done by the destructor
//
// Endpoints:
//   GET /metrics  200, Content-Type "text/plain; version=0.0.4; charset=utf-8", Metrics::render()
//   GET /healthz  200 "ok\n"; 503 and the reason when MetricsHttpOptions::health_check says so
//   anything else 404; any method but GET and HEAD 405, before its body is read (a declared
//   body over 4 KiB: 413). One request per connection; reads and writes time out after 2 s.
//   Two workers serve it: meant for a scraper on a private network, not for the open internet
//   (a client that trickles its headers still holds a worker).
//
// Ownership: the server shares the registry and runs its own threads (a listener and a small
// pool) from start() until stop() or destruction.
// Thread safety: port(), host() and stop() are safe from any thread; stop() is idempotent.
// Errors: start() throws std::runtime_error naming the address when it cannot listen there;
// parse_listen_address() throws std::invalid_argument for a malformed address.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "saga/metrics.hpp"

namespace saga {

struct MetricsHttpOptions {
  // Address to listen on. Default: 127.0.0.1 (loopback only).
  std::string host = "127.0.0.1";
  // TCP port; 0 picks a free one (see port()). Default: 9464.
  int port = 9464;
  // Returns "" when healthy, else the reason served with 503 by /healthz. Default: always ok.
  std::function<std::string()> health_check = {};
};

class MetricsHttpServer {
 public:
  static std::unique_ptr<MetricsHttpServer> start(std::shared_ptr<const Metrics> metrics,
                                                  MetricsHttpOptions options = {});
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  const std::string& host() const noexcept;
  int port() const noexcept;  // the bound port (the chosen one when 0 was asked)
  void stop() noexcept;

 private:
  struct Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "HOST:PORT" -> {host, port}; e.g. "127.0.0.1:9464", "0.0.0.0:0", "[::1]:9464", "localhost:80".
// The port is 0..65535.
std::pair<std::string, int> parse_listen_address(std::string_view address);

}  // namespace saga
