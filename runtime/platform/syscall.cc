#include "runtime/platform/syscall.h"

#include <string>

namespace weft::internal {

absl::Status ErrnoStatus(int err, std::string_view op) {
  return absl::ErrnoToStatus(err, std::string(op));
}

}  // namespace weft::internal
