// process/internal/reaper.h
//
// The reaper: one process-wide thread that reaps children nobody waits for
// (a Child destroyed before a successful wait()). It holds their pidfds in
// its own epoll set and calls waitid(P_PIDFD) when one becomes readable.
// NOT for users.
#pragma once

#include <cstdint>

namespace weft::process::internal {

// reap_later() takes ownership of `pidfd` (a pidfd of an unreaped child)
// and reaps the child once it exits. Any thread; never blocks for long.
void reap_later(int pidfd);

// reaper_pending() is how many children the reaper still waits for.
int64_t reaper_pending();

}  // namespace weft::process::internal
