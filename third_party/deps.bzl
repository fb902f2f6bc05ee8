"""weft_deps(): every external repository weft needs, for weft itself and
for a workspace that uses weft:

    local_repository(name = "weft", path = "/path/to/weft")
    load("@weft//third_party:deps.bzl", "weft_deps")
    weft_deps()

All of them come from Debian's packages (tools/setup.sh installs them), so
the build is offline. A repository the caller declared already is kept.
"""

load("//third_party:local_rules_cc.bzl", "local_rules_cc")

def _maybe(rule, name, **kwargs):
    if name not in native.existing_rules():
        rule(name = name, **kwargs)

def _coverage_tools_impl(rctx):
    # Coverage is not used; Bazel only needs these targets to exist.
    rctx.file("WORKSPACE", "")
    rctx.file("BUILD.bazel", rctx.read(rctx.attr.build_file))

_coverage_tools = repository_rule(
    implementation = _coverage_tools_impl,
    attrs = {"build_file": attr.label(allow_single_file = True)},
    local = True,
)

def weft_deps():
    _maybe(
        native.local_repository,
        name = "platforms",
        path = "/usr/share/bazel/tools/platforms",
    )
    _maybe(
        native.local_repository,
        name = "rules_java",
        path = "/usr/share/bazel/rules/java",
    )

    # Debian's rules_cc calls use_cpp_toolchain(), which Bazel 4.2.3 lacks;
    # local_rules_cc copies it and substitutes the plain toolchain type.
    _maybe(
        local_rules_cc,
        name = "rules_cc",
        path = "/usr/share/bazel/rules/cc",
    )
    _maybe(
        _coverage_tools,
        name = "remote_coverage_tools",
        build_file = Label("//third_party:remote_coverage_tools.BUILD"),
    )

    # System libraries (Debian: libboost-context-dev, libabsl-dev,
    # doctest-dev), one target each.
    _maybe(
        native.new_local_repository,
        name = "system_libs",
        path = "/usr",
        build_file = str(Label("//third_party:system_libs.BUILD")),
    )
