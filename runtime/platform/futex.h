// runtime/platform/futex.h
//
// futex_wait()/futex_wake(): the private futex calls that park plain
// threads (Waiter off a fiber). NOT for users.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>

namespace weft::internal {

// futex_wait() blocks while *word == expected, until futex_wake() or the
// relative timeout (null: none). Returns the syscall's result; spurious
// returns happen, so callers re-check their condition.
int futex_wait(std::atomic<uint32_t>* word, uint32_t expected, const timespec* timeout);

// futex_wake() wakes up to `count` threads blocked on word.
void futex_wake(std::atomic<uint32_t>* word, int count = 1);

}  // namespace weft::internal
