#pragma once
#include <cstdint>
namespace weft::testing { int64_t Scale(); }
