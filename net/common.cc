#include "net/common.h"

#include "runtime/platform/syscall.h"

namespace weft::net {

std::optional<int> error_number(const absl::Status& s) { return internal::ErrnoOf(s); }

}  // namespace weft::net
