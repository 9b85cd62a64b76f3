// The resource tracker: a helper process that unlinks the named semaphores
// and shared-memory segments a program created if the program ends without
// unlinking them (a crash, SIGKILL, _exit).
//
// One tracker serves every process that shares its socket: it is started on
// first use, forked children inherit the connection, and the tracker holds
// the only other end. Each creator sends a "register" record when it creates
// a name and an "unregister" record when it unlinks it. When every process
// holding the connection has ended, the tracker reads end-of-file, unlinks
// whatever is still registered, and exits. The tracker is a grandchild
// (reparented to init), so it is never mistaken for a child of the program,
// and it ignores SIGINT and SIGTERM, like CPython's.
//
// The connection is close-on-exec: a spawned program starts its own tracker
// when it first creates a resource.
#ifndef MULTIPROCESSING_SYNCHRONIZE_INTERNAL_RESOURCE_TRACKER_H_
#define MULTIPROCESSING_SYNCHRONIZE_INTERNAL_RESOURCE_TRACKER_H_

#include <sys/types.h>

#include <string_view>

namespace multiprocessing::internal::resource_tracker {

// Resource types: how the tracker unlinks a name.
inline constexpr std::string_view kSemaphore = "semaphore";  // sem_unlink
inline constexpr std::string_view kSharedMemory =
    "shared_memory";  // shm_unlink

// Starts the tracker unless this process already has one. Throws OSError if
// it cannot.
void ensure_running();
// Records that `name` (a "/name" as given to sem_open / shm_open) must be
// unlinked if the program dies. Throws ValueError for a name that is too
// long or holds a ':' or newline.
void register_resource(std::string_view name, std::string_view rtype);
// Forgets `name` (it was unlinked normally).
void unregister_resource(std::string_view name, std::string_view rtype);
// The tracker's pid (0 if not running in this process's view).
pid_t tracker_pid();
// The connection's descriptor (-1 if not running).
int getfd();

}  // namespace multiprocessing::internal::resource_tracker

#endif  // MULTIPROCESSING_SYNCHRONIZE_INTERNAL_RESOURCE_TRACKER_H_
