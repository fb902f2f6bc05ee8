"""Makes Debian's rules_cc usable from Bazel 4.2.3."""

def _local_rules_cc_impl(rctx):
    src = rctx.path(rctx.attr.path)
    rctx.execute(["cp", "-r", str(src) + "/.", "."], quiet = True)
    for f in [
        "cc/private/rules_impl/cc_flags_supplier.bzl",
        "cc/private/rules_impl/compiler_flag.bzl",
    ]:
        text = rctx.read(f)
        text = text.replace(', "use_cpp_toolchain")', ")")
        text = text.replace("use_cpp_toolchain()", '["@bazel_tools//tools/cpp:toolchain_type"]')
        rctx.file(f, text)

local_rules_cc = repository_rule(
    implementation = _local_rules_cc_impl,
    attrs = {"path": attr.string(mandatory = True)},
    local = True,
)
