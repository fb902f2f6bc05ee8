#include "net/common.h"

#include "runtime/platform/syscall.h"

namespace weft::net {

std::optional<int> error_number(const absl::Status& s) { return internal::errno_of(s); }

}  // namespace weft::net
