// Client-side state of proxies and managers, shared by proxy.cc and
// managers.cc.
#ifndef MULTIPROCESSING_MANAGERS_INTERNAL_STATE_H_
#define MULTIPROCESSING_MANAGERS_INTERNAL_STATE_H_

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "managers/proxy.h"
#include "reduction/object.h"

namespace multiprocessing::managers::internal {

// What proxies made by a manager object know about it: once it has shut its
// server down they no longer try to release their references.
struct ManagerLink {
  std::atomic<bool> shut_down{false};
};

struct ProxyState {
  ProxyState() = default;
  ProxyState(const ProxyState&) = delete;
  ProxyState& operator=(const ProxyState&) = delete;
  // Releases the server reference when this process holds one.
  ~ProxyState();

  Token token;
  std::string authkey;
  std::optional<std::vector<std::string>> exposed;
  const char* proxy_name = "BaseProxy";
  // Names this thread's connection to the server (address and key).
  std::string connection_key;
  std::shared_ptr<ManagerLink> link;  // null for proxies received by pickle
  // The process holding a server reference for this proxy; 0: none.
  std::atomic<pid_t> owner_pid{0};
  // Attributes of the proxy itself (NamespaceProxy's '_' names).
  mutable std::mutex mu;
  std::map<std::string, reduction::Object> local_attrs;
};

// A state for `token`; `owned`: this process already holds a reference (the
// server took it for us), released when the state goes.
std::shared_ptr<ProxyState> NewState(
    Token token, std::string authkey,
    std::optional<std::vector<std::string>> exposed,
    std::shared_ptr<ManagerLink> link, const char* proxy_name, bool owned);

// Calls a function of the server itself (request id None) over this
// thread's connection.
Response PublicCall(const connection::Address& address,
                    const std::string& authkey, std::string_view method,
                    const reduction::Object& args);
void Incref(const ProxyState& s);

// Set in a child forked to run a manager's server: the proxies it inherits
// take no references (their server is this process).
void SetManagerServerChild(bool value);
bool InManagerServerChild();

}  // namespace multiprocessing::managers::internal

#endif  // MULTIPROCESSING_MANAGERS_INTERNAL_STATE_H_
