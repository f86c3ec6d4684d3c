#include "saga/metrics_http.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <charconv>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace saga {
namespace {
constexpr std::size_t kMaxRequestBodyBytes = 4096;
}  // namespace

struct MetricsHttpServer::Impl {
  std::shared_ptr<const Metrics> metrics;
  MetricsHttpOptions options;
  httplib::Server server;
  std::thread listener;
  int port = 0;
  std::once_flag stopped;
};

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsHttpServer::~MetricsHttpServer() {
  stop();
}

std::unique_ptr<MetricsHttpServer> MetricsHttpServer::start(std::shared_ptr<const Metrics> metrics,
                                                            MetricsHttpOptions options) {
  if (!metrics) throw std::invalid_argument("MetricsHttpServer: no metrics registry");
  auto impl = std::make_unique<Impl>();
  impl->metrics = std::move(metrics);
  impl->options = std::move(options);
  Impl& self = *impl;
  self.server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // Only GETs are served, and no request body is read into memory (httplib reads a body before
  // routing, by default without a limit, so one POST could fill the engine's memory). One request
  // per connection and short timeouts keep the two workers from being held by idle clients.
  self.server.set_payload_max_length(kMaxRequestBodyBytes);  // a declared length: 413
  // A chunked body has no declared length, and httplib 0.11 does not hold it to that limit: other
  // methods are answered before their body is read (pre-routing runs before it), and the
  // connection closes.
  self.server.set_pre_routing_handler(
      [](const httplib::Request& request, httplib::Response& response) {
        if (request.method == "GET" || request.method == "HEAD")
          return httplib::Server::HandlerResponse::Unhandled;
        response.status = 405;
        response.set_header("Allow", "GET, HEAD");
        response.set_content("only GET is served\n", "text/plain; charset=utf-8");
        return httplib::Server::HandlerResponse::Handled;
      });
  self.server.set_keep_alive_max_count(1);
  self.server.set_read_timeout(2, 0);
  self.server.set_write_timeout(2, 0);
  // httplib's default sets SO_REUSEPORT, which would let a second process share the port.
  self.server.set_socket_options([](auto socket) {
    int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  self.server.Get("/metrics", [&self](const httplib::Request&, httplib::Response& response) {
    response.set_content(self.metrics->render(), std::string(kMetricsContentType));
  });
  self.server.Get("/healthz", [&self](const httplib::Request&, httplib::Response& response) {
    std::string problem = self.options.health_check ? self.options.health_check() : "";
    response.status = problem.empty() ? 200 : 503;
    response.set_content(problem.empty() ? "ok\n" : problem + "\n", "text/plain; charset=utf-8");
  });

  const std::string address = self.options.host + ":" + std::to_string(self.options.port);
  if (self.options.port == 0) {
    self.port = self.server.bind_to_any_port(self.options.host);
    if (self.port < 0) self.port = 0;
  } else if (self.server.bind_to_port(self.options.host, self.options.port)) {
    self.port = self.options.port;
  }
  if (self.port <= 0) throw std::runtime_error("metrics endpoint: cannot listen on " + address);

  self.listener = std::thread([&self] { self.server.listen_after_bind(); });
  // stop() only reaches a server that is already accepting; wait until it is (microseconds).
  while (!self.server.is_running()) std::this_thread::sleep_for(std::chrono::microseconds{200});
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl)));
}

const std::string& MetricsHttpServer::host() const noexcept {
  return impl_->options.host;
}

int MetricsHttpServer::port() const noexcept {
  return impl_->port;
}

void MetricsHttpServer::stop() noexcept {
  std::call_once(impl_->stopped, [this] {
    impl_->server.stop();
    if (impl_->listener.joinable()) impl_->listener.join();
  });
}

std::pair<std::string, int> parse_listen_address(std::string_view address) {
  auto bad = [&](std::string_view why) {
    return std::invalid_argument("listen address '" + std::string(address) + "': " +
                                 std::string(why) + " (expected HOST:PORT, e.g. 127.0.0.1:9464)");
  };
  auto colon = address.rfind(':');
  if (colon == std::string_view::npos) throw bad("no port");
  std::string_view host = address.substr(0, colon);
  std::string_view port_text = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) throw bad("no host");
  int port = -1;
  auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (error != std::errc{} || end != port_text.data() + port_text.size() || port < 0 ||
      port > 65535)
    throw bad("the port is not a number from 0 to 65535");
  return {std::string(host), port};
}

}  // namespace saga
