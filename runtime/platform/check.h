// runtime/platform/check.h
//
// WEFT_CHECK: aborts with a message that names the mistake. Used for
// programming errors (join twice, a fiber call off a fiber), never for
// recoverable conditions, which are absl::Status.
#pragma once

namespace weft::internal {

[[noreturn]] void fatal(const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace weft::internal

#define WEFT_CHECK(cond, ...)                                   \
  do {                                                          \
    if (__builtin_expect(!(cond), 0)) {                         \
      ::weft::internal::fatal(__FILE__, __LINE__, __VA_ARGS__); \
    }                                                           \
  } while (0)

#ifdef NDEBUG
#define WEFT_DCHECK(cond, ...) \
  do {                         \
  } while (0)
#else
#define WEFT_DCHECK(cond, ...) WEFT_CHECK(cond, __VA_ARGS__)
#endif
