#include "runtime/platform/syscall.h"

#include <charconv>
#include <string>

#include "absl/strings/cord.h"

namespace weft::internal {

namespace {
constexpr char kErrnoPayload[] = "weft.errno";
}  // namespace

absl::Status ErrnoStatus(int err, std::string_view op) {
  absl::Status s = absl::ErrnoToStatus(err, std::string(op));
  s.SetPayload(kErrnoPayload, absl::Cord(std::to_string(err)));
  return s;
}

std::optional<int> ErrnoOf(const absl::Status& s) {
  auto p = s.GetPayload(kErrnoPayload);
  if (!p) return std::nullopt;
  std::string text(*p);
  int v = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc()) return std::nullopt;
  return v;
}

__attribute__((noinline, noipa)) int LastErrno() {
  int e = errno;
  asm volatile("" ::: "memory");
  return e;
}

}  // namespace weft::internal
