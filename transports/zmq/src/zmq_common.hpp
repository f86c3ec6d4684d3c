// Private to saga_zmq_transport: frame types and CURVE key files shared by both ends.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>

#include <zmq.h>

namespace saga::zmq_detail {

inline constexpr std::string_view kAnnounce = "ANNOUNCE";
inline constexpr std::string_view kWelcome = "WELCOME";
inline constexpr std::string_view kHeartbeat = "HEARTBEAT";
inline constexpr std::string_view kMessage = "MESSAGE";
inline constexpr std::string_view kError = "ERROR";
inline constexpr int kProtocolVersion = 1;

// When a receive(wait) gives up: now + wait, with wait clamped to [0, 24 h].
inline std::chrono::steady_clock::time_point deadline_after(std::chrono::milliseconds wait) {
  return std::chrono::steady_clock::now() +
         std::clamp(wait, std::chrono::milliseconds(0),
                    std::chrono::milliseconds(std::chrono::hours(24)));
}

// Reads a Z85 key (40 characters, whitespace ignored) from `path`. The error names the file,
// never its content.
inline std::string read_z85_key_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + what + " file '" + path + "'");
  std::string key;
  for (auto it = std::istreambuf_iterator<char>(in); it != std::istreambuf_iterator<char>(); ++it) {
    if (!std::isspace(static_cast<unsigned char>(*it))) key.push_back(*it);
    if (key.size() > 40) break;
  }
  std::array<std::uint8_t, 32> binary{};
  if (key.size() != 40 || zmq_z85_decode(binary.data(), key.c_str()) == nullptr) {
    throw std::runtime_error(what + " file '" + path + "' does not hold a 40-character Z85 key");
  }
  return key;
}

inline std::string z85_to_binary(const std::string& z85) {
  std::array<std::uint8_t, 32> binary{};
  zmq_z85_decode(binary.data(), z85.c_str());
  return std::string(reinterpret_cast<const char*>(binary.data()), binary.size());
}

inline void wipe(std::string& secret) noexcept {
  volatile char* p = secret.data();
  for (std::size_t i = 0; i < secret.size(); ++i) p[i] = 0;
  secret.clear();
}

}  // namespace saga::zmq_detail
