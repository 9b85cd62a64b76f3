// What the connection package's own files need from a Connection beyond its
// public API.
#ifndef MULTIPROCESSING_CONNECTION_CONNECTION_INTERNAL_H_
#define MULTIPROCESSING_CONNECTION_CONNECTION_INTERNAL_H_

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "connection/connection.h"

namespace multiprocessing::connection::internal {

struct ConnectionAccess {
  // Until cleared, every read on `conn` (and every write that finds the socket
  // full) that would block past `deadline` raises TimeoutError; the client's
  // authentication handshake sets one deadline for all of it, so that a silent
  // or trickling peer cannot hold it for ever.
  static void SetReadDeadline(
      const Connection& conn,
      std::optional<std::chrono::steady_clock::time_point> deadline);

  // For pickling a Pipe() end: the descriptor of its shared-memory rings (-1
  // for other connections) and which end it is.
  static int RingFd(const Connection& conn);
  static int RingSide(const Connection& conn);
  // Rebuilds a Pipe() end from its socket and ring descriptors (both owned by
  // the result, also on error).
  static Connection FromRing(int sock, int memfd, bool readable, bool writable,
                             int side);
};

// The pieces of the authentication handshake (challenge.cc), shared by the
// blocking deliver_challenge / answer_challenge and the listener's concurrent
// handshakes.
inline constexpr std::string_view kChallenge = "#CHALLENGE#";
inline constexpr std::string_view kWelcome = "#WELCOME#";
inline constexpr std::string_view kFailure = "#FAILURE#";
// No handshake message is longer (CPython reads them with maxlength 256).
inline constexpr std::size_t kMaxHandshakeMessage = 256;
// A fresh challenge: "{digest_name}" and 40 random bytes (sent after
// kChallenge).
std::string NewChallenge(std::string_view digest_name);
// Raises AuthenticationError unless `response` is the HMAC of `challenge`
// under `authkey`.
void CheckAnswer(std::string_view authkey, std::string_view challenge,
                 std::string_view response);
// The reply to a received "#CHALLENGE#..." message; AuthenticationError for a
// malformed one.
std::string AnswerFor(std::string_view authkey, std::string_view received);
// Raises AuthenticationError unless `response` is kWelcome.
void CheckWelcome(std::string_view response);

}  // namespace multiprocessing::connection::internal

#endif  // MULTIPROCESSING_CONNECTION_CONNECTION_INTERNAL_H_
