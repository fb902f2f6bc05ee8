#include "runtime/internal/paged_table.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

namespace weft::internal {
namespace {

struct Item {
  int value = -1;  // value-initialised elements keep their default
  uint64_t pad[3] = {};
};

TEST_CASE("PagedTable: grows across pages, indexes every element, never moves one") {
  PagedTable<Item, 2> t;  // pages of 4, to cross many page boundaries
  CHECK(t.size() == 0);
  std::vector<Item*> addresses;
  for (int i = 0; i < 23; ++i) {
    Item& it = t.emplace_back();
    CHECK(it.value == -1);
    it.value = i * 7;
    addresses.push_back(&it);
    CHECK(t.size() == static_cast<size_t>(i + 1));
  }
  for (int i = 0; i < 23; ++i) {
    CHECK(t[i].value == i * 7);
    CHECK(&t[i] == addresses[i]);  // growth moved nothing
  }
  const auto& ct = t;
  CHECK(ct[22].value == 154);
}

TEST_CASE("PagedTable: the default page holds 256 and the 257th opens a page") {
  PagedTable<Item> t;
  for (int i = 0; i < 257; ++i) t.emplace_back().value = i;
  CHECK(t.size() == 257);
  CHECK(t[255].value == 255);
  CHECK(t[256].value == 256);
  CHECK(&t[0] + 255 == &t[255]);  // one page is contiguous
}

}  // namespace
}  // namespace weft::internal
