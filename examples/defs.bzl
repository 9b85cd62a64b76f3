"""The examples' output tests."""

def output_test(example, method = None, expected = None, script = "expect_output.sh", size = "small"):
    """Runs :example (with `method`, the start method, as its argument if given) and compares its output
    with testdata/<expected>.out (default: the example's name) using `script`.

    The test is named <example>_test, or <example>_<method>_test with a method.
    """
    expected = expected or example
    native.sh_test(
        name = "%s_%s_test" % (example, method) if method else example + "_test",
        size = size,
        srcs = [script],
        args = [
            "$(location testdata/%s.out)" % expected,
            "$(location :%s)" % example,
        ] + ([method] if method else []),
        data = [
            "testdata/%s.out" % expected,
            ":" + example,
        ],
    )
