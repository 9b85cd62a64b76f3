// The authentication handshake of multiprocessing.connection, as CPython 3.12
// speaks it, which also interoperates with the HMAC-MD5-only handshake of
// CPython 3.11 and older:
//
//   server -> client  "#CHALLENGE#" + "{sha256}" + 40 random bytes
//                     (<= 3.11 servers: 20 bytes, no prefix)
//   client -> server  "{sha256}" + HMAC-SHA256(key, challenge)
//                     (the digest the challenge named; to a 20-byte
//                     challenge: the raw 16-byte HMAC-MD5)
//   server -> client  "#WELCOME#" or "#FAILURE#"
//
// A <= 3.11 client answers our prefixed challenge with a raw HMAC-MD5 of all of
// it, which we accept: the MAC covers the prefix, so it cannot be used to
// downgrade a client that speaks the new protocol.
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include <array>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "connection/connection_internal.h"
#include "connection/listener.h"
#include "errors/errors.h"

namespace multiprocessing::connection {
namespace {

using internal::kChallenge;
using internal::kMaxHandshakeMessage;
using internal::kWelcome;
constexpr std::size_t kMessageLength = 40;  // random bytes in our challenge
constexpr std::size_t kLegacyMessageLength = 20;  // a <= 3.11 challenge
constexpr std::size_t kMd5DigestLength = 16;      // a <= 3.11 answer
// CPython's allowed digests; BoringSSL has no SHA-3, so those are recognised
// but refused.
constexpr std::array<std::string_view, 5> kAllowedDigests = {
    "md5", "sha256", "sha384", "sha3_256", "sha3_384"};
constexpr std::size_t kMaxDigestNameLength = 8;

// Python's repr of a short byte string, for error messages.
std::string BytesForMessage(std::string_view bytes) {
  std::string out = "b'";
  for (unsigned char c : bytes.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  out += bytes.size() > 64 ? "'..." : "'";
  return out;
}

struct DigestAndPayload {
  std::string name;  // empty: the legacy protocol (HMAC-MD5, no prefix)
  std::string_view payload;
};

DigestAndPayload SplitDigest(std::string_view message) {
  if (message.size() == kLegacyMessageLength ||
      message.size() == kMd5DigestLength) {
    return {"", message};
  }
  if (!message.empty() && message[0] == '{') {
    const std::size_t curly =
        message.substr(0, kMaxDigestNameLength + 2).find('}', 1);
    if (curly != std::string_view::npos) {
      const std::string_view name = message.substr(1, curly - 1);
      for (std::string_view allowed : kAllowedDigests) {
        if (name == allowed)
          return {std::string(name), message.substr(curly + 1)};
      }
    }
  }
  throw AuthenticationError(
      absl::StrCat("unsupported message length, missing digest prefix, or "
                   "unsupported digest: message=",
                   BytesForMessage(message)));
}

const EVP_MD* DigestByName(std::string_view name) {
  if (name == "md5") return EVP_md5();
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  return nullptr;
}

std::string Hmac(std::string_view digest_name, std::string_view key,
                 std::string_view message) {
  const EVP_MD* md = DigestByName(digest_name);
  if (md == nullptr) {
    throw AuthenticationError(
        absl::StrCat("digest '", std::string(digest_name),
                     "' is not supported here; use md5, sha256 or sha384"));
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int out_length = 0;
  if (HMAC(md, key.data(), key.size(),
           reinterpret_cast<const unsigned char*>(message.data()),
           message.size(), out, &out_length) == nullptr) {
    throw AuthenticationError("HMAC computation failed");
  }
  return std::string(reinterpret_cast<const char*>(out), out_length);
}

// recv_bytes for the handshake: bounded, and every transport failure is an
// authentication failure.
std::string RecvHandshakeMessage(Connection& connection,
                                 std::string_view waiting_for) {
  try {
    return connection.recv_bytes(kMaxHandshakeMessage);
  } catch (const AuthenticationError&) {
    throw;
  } catch (const Exception& e) {
    throw AuthenticationError(
        absl::StrCat("authentication failed while waiting for ",
                     std::string(waiting_for), ": ", e.what()));
  }
}

}  // namespace

namespace internal {

std::string NewChallenge(std::string_view digest_name) {
  unsigned char random[kMessageLength];
  if (RAND_bytes(random, sizeof random) != 1)
    throw AuthenticationError("RAND_bytes failed");
  std::string message = "{" + std::string(digest_name) + "}";
  message.append(reinterpret_cast<const char*>(random), sizeof random);
  return message;
}

void CheckAnswer(std::string_view authkey, std::string_view challenge,
                 std::string_view response) {
  const DigestAndPayload answer = SplitDigest(response);
  const std::string name = answer.name.empty() ? "md5" : answer.name;
  const std::string expected = Hmac(name, authkey, challenge);
  if (expected.size() != answer.payload.size()) {
    throw AuthenticationError(absl::StrCat("expected '", name, "' of length ",
                                           expected.size(), " got ",
                                           answer.payload.size()));
  }
  if (CRYPTO_memcmp(expected.data(), answer.payload.data(), expected.size()) !=
      0) {
    throw AuthenticationError(
        "digest received was wrong: the peer does not know the "
        "authentication key");
  }
}

std::string AnswerFor(std::string_view authkey, std::string_view received) {
  if (received.substr(0, kChallenge.size()) != kChallenge) {
    throw AuthenticationError(
        absl::StrCat("Protocol error, expected challenge: message=",
                     BytesForMessage(received)));
  }
  const std::string_view message = received.substr(kChallenge.size());
  if (message.size() < kLegacyMessageLength) {
    throw AuthenticationError(
        absl::StrCat("challenge too short: ", message.size(), " bytes"));
  }
  const DigestAndPayload challenge = SplitDigest(message);
  if (challenge.name.empty()) return Hmac("md5", authkey, message);
  return absl::StrCat("{", challenge.name, "}",
                      Hmac(challenge.name, authkey, message));
}

void CheckWelcome(std::string_view response) {
  if (response != kWelcome) {
    throw AuthenticationError(
        "digest sent was rejected: the peer uses a different authentication "
        "key");
  }
}

}  // namespace internal

void deliver_challenge(Connection& connection, std::string_view authkey,
                       std::string_view digest_name) {
  const std::string message = internal::NewChallenge(digest_name);
  connection.send_bytes(std::string(internal::kChallenge) + message);
  const std::string response =
      RecvHandshakeMessage(connection, "the answer to our challenge");
  try {
    internal::CheckAnswer(authkey, message, response);
  } catch (const AuthenticationError&) {
    try {
      connection.send_bytes(internal::kFailure);
    } catch (const Exception&) {
      // The peer may be gone already; the failure is what we report.
    }
    throw;
  }
  connection.send_bytes(internal::kWelcome);
}

void answer_challenge(Connection& connection, std::string_view authkey) {
  const std::string received = RecvHandshakeMessage(connection, "a challenge");
  connection.send_bytes(internal::AnswerFor(authkey, received));
  internal::CheckWelcome(RecvHandshakeMessage(connection, "the welcome"));
}

}  // namespace multiprocessing::connection
