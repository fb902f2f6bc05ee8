#include "runtime/platform/check.h"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace weft::internal {

void fatal(const char* file, int line, const char* fmt, ...) {
  char buf[1024];
  int n = std::snprintf(buf, sizeof(buf), "weft: ");
  va_list ap;
  va_start(ap, fmt);
  n += std::vsnprintf(buf + n, sizeof(buf) - static_cast<size_t>(n), fmt, ap);
  va_end(ap);
  if (n > static_cast<int>(sizeof(buf)) - 64) n = static_cast<int>(sizeof(buf)) - 64;
  n += std::snprintf(buf + n, sizeof(buf) - static_cast<size_t>(n), " (%s:%d)\n", file, line);
  (void)!::write(STDERR_FILENO, buf, static_cast<size_t>(n));
  std::abort();
}

}  // namespace weft::internal
