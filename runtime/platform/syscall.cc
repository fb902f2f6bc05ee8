#include "runtime/platform/syscall.h"

#include <string.h>

#include <charconv>
#include <string>

#include "absl/strings/cord.h"

namespace weft::internal {

namespace {
constexpr char kErrnoPayload[] = "weft.errno";
}  // namespace

absl::Status errno_status(int err, std::string_view op) {
  // The same code and message as absl::ErrnoToStatus ("op: strerror"), but
  // with glibc's strerror_r: abseil's own table is built lazily behind a
  // guard inside an uninstrumented system library, which ThreadSanitizer
  // reports as a race when two threads format their first errors at once.
  char buf[256];
  const char* text = ::strerror_r(err, buf, sizeof buf);  // GNU: may return a static string
  std::string message(op);
  message += ": ";
  message += text;
  absl::Status s(absl::ErrnoToStatusCode(err), message);
  s.SetPayload(kErrnoPayload, absl::Cord(std::to_string(err)));
  return s;
}

std::optional<int> errno_of(const absl::Status& s) {
  auto p = s.GetPayload(kErrnoPayload);
  if (!p) return std::nullopt;
  std::string text(*p);
  int v = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc()) return std::nullopt;
  return v;
}

__attribute__((noinline, noipa)) int last_errno() {
  int e = errno;
  asm volatile("" ::: "memory");
  return e;
}

}  // namespace weft::internal
