"""Compiler flags for weft's own code (dependencies are silenced in .bazelrc)."""

WEFT_DEFAULT_COPTS = [
    "-std=c++20",
    "-Wall",
    "-Wextra",
    "-Wcast-qual",
    "-Wvla",
    "-Wno-unused-parameter",
    "-Werror",
]

WEFT_TEST_COPTS = WEFT_DEFAULT_COPTS + [
    "-Wno-unused-variable",
]
