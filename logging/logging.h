// multiprocessing's logging: the logger named "multiprocessing", as in Python's
// multiprocessing.util.
//
//   auto& logger = multiprocessing::log_to_stderr();   // adds a stderr handler
//   logger.setLevel(multiprocessing::logging::INFO);
//   logger.warning("doomed");   // prints [WARNING/MainProcess] doomed
//
// A new logger has level NOTSET and no handler, so the library is silent until
// asked. Each record is written with one write(2), so lines from concurrent
// processes never interleave. The process name in records comes from a provider
// that the process package installs (SetProcessNameProvider).
#ifndef MULTIPROCESSING_LOGGING_LOGGING_H_
#define MULTIPROCESSING_LOGGING_LOGGING_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"

namespace multiprocessing {
namespace logging {

// Python's levels, with multiprocessing's SUBDEBUG and SUBWARNING.
inline constexpr int NOTSET = 0;
inline constexpr int SUBDEBUG = 5;
inline constexpr int DEBUG = 10;
inline constexpr int INFO = 20;
inline constexpr int SUBWARNING = 25;
inline constexpr int WARNING = 30;
inline constexpr int ERROR = 40;
inline constexpr int CRITICAL = 50;

// "WARNING" for 30, ..., "Level 17" for a level without a name (Python's
// logging.getLevelName).
std::string getLevelName(int level);

// What a handler receives for each record.
struct LogRecord {
  std::string name;  // the logger's name
  int levelno = NOTSET;
  std::string levelname;
  std::string message;
  std::string processName;  // current_process().name
  int process = 0;          // pid
  double created = 0;       // seconds since the epoch
};

// Python's logging.Formatter for the %(key)s / %(key)d fields of LogRecord
// (name, levelno, levelname, message, processName, process, created, asctime);
// "%%" is a percent sign.
class Formatter {
 public:
  explicit Formatter(std::string fmt = "%(message)s") : fmt_(std::move(fmt)) {}
  std::string format(const LogRecord& record) const;

 private:
  std::string fmt_;
};

// multiprocessing's DEFAULT_LOGGING_FORMAT.
inline constexpr char kDefaultFormat[] =
    "[%(levelname)s/%(processName)s] %(message)s";

// Receives the records of the loggers it is added to.
class Handler {
 public:
  virtual ~Handler() = default;
  void setLevel(int level) { level_.store(level, std::memory_order_relaxed); }
  int level() const { return level_.load(std::memory_order_relaxed); }
  void setFormatter(Formatter formatter);
  // Formats `record` and emits it when it passes the handler's level.
  void handle(const LogRecord& record);

 protected:
  virtual void emit(const std::string& line) = 0;

 private:
  std::atomic<int> level_{NOTSET};
  // Swapped atomically rather than under a mutex: records are emitted without
  // taking any lock, so a fork in another thread can never leave a child unable
  // to log.
  std::atomic<std::shared_ptr<const Formatter>> formatter_{
      std::make_shared<const Formatter>()};
};

// Writes each record and a newline to a file descriptor with one write(2).
class StreamHandler : public Handler {
 public:
  explicit StreamHandler(int fd = 2) : fd_(fd) {}
  int fd() const { return fd_; }

 protected:
  void emit(const std::string& line) override;

 private:
  int fd_;
};

// Appends records to a file (opened with O_APPEND, so writers in many processes
// never interleave).
class FileHandler : public StreamHandler {
 public:
  explicit FileHandler(const std::string& path);
  ~FileHandler() override;
};

class Logger {
 public:
  explicit Logger(std::string name) : name_(std::move(name)) {}
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  const std::string& name() const { return name_; }
  void setLevel(int level) { level_.store(level, std::memory_order_relaxed); }
  int level() const { return level_.load(std::memory_order_relaxed); }
  // The logger does not propagate (as multiprocessing's), so its effective
  // level is its own; NOTSET means Python's root default, WARNING.
  int getEffectiveLevel() const;
  bool isEnabledFor(int level) const { return level >= getEffectiveLevel(); }

  void addHandler(std::shared_ptr<Handler> handler);
  void removeHandler(const std::shared_ptr<Handler>& handler);
  std::vector<std::shared_ptr<Handler>> handlers() const;

  // Builds the record and hands it to every handler. Message arguments are
  // concatenated (absl::StrCat), and only when the level is enabled.
  void log(int level, std::string_view message);
  template <class... Args>
  void log(int level, const Args&... args) {
    if (isEnabledFor(level))
      log(level, std::string_view(absl::StrCat(args...)));
  }
  template <class... Args>
  void subdebug(const Args&... a) {
    log(SUBDEBUG, a...);
  }
  template <class... Args>
  void debug(const Args&... a) {
    log(DEBUG, a...);
  }
  template <class... Args>
  void info(const Args&... a) {
    log(INFO, a...);
  }
  template <class... Args>
  void subwarning(const Args&... a) {
    log(SUBWARNING, a...);
  }
  template <class... Args>
  void warning(const Args&... a) {
    log(WARNING, a...);
  }
  template <class... Args>
  void error(const Args&... a) {
    log(ERROR, a...);
  }
  template <class... Args>
  void critical(const Args&... a) {
    log(CRITICAL, a...);
  }

 private:
  using HandlerList = std::vector<std::shared_ptr<Handler>>;
  const std::string name_;
  std::atomic<int> level_{NOTSET};
  std::mutex
      mu_;  // serialises addHandler/removeHandler; logging itself takes no lock
  std::atomic<std::shared_ptr<const HandlerList>> handlers_{
      std::make_shared<const HandlerList>()};
};

// The process name used in records; the process package installs
// current_process().name. Until then records say "MainProcess".
void SetProcessNameProvider(std::string (*provider)());

// Library-internal logging helpers, as multiprocessing.util's
// sub_debug/debug/info/sub_warning: they cost one atomic load when the logger
// is disabled.
template <class... Args>
void sub_debug(const Args&... a);
template <class... Args>
void debug(const Args&... a);
template <class... Args>
void info(const Args&... a);
template <class... Args>
void sub_warning(const Args&... a);

}  // namespace logging

// The multiprocessing logger ("multiprocessing"): level NOTSET, no handler
// until one is added.
logging::Logger& get_logger();

// Adds a stderr handler with DEFAULT_LOGGING_FORMAT to the logger (once), sets
// its level if given, and returns it.
logging::Logger& log_to_stderr(std::optional<int> level = std::nullopt);

namespace logging {
template <class... Args>
void sub_debug(const Args&... a) {
  get_logger().log(SUBDEBUG, a...);
}
template <class... Args>
void debug(const Args&... a) {
  get_logger().log(DEBUG, a...);
}
template <class... Args>
void info(const Args&... a) {
  get_logger().log(INFO, a...);
}
template <class... Args>
void sub_warning(const Args&... a) {
  get_logger().log(SUBWARNING, a...);
}
}  // namespace logging

}  // namespace multiprocessing

#endif  // MULTIPROCESSING_LOGGING_LOGGING_H_
