#!/usr/bin/env python3
"""Writes the golden vectors of //reduction: pickles made by CPython and what they must decode to.

golden.txt: one case a line, `protocol<TAB>hex of pickle.dumps(value, protocol)<TAB>repr(value)`; a repr
longer than 2000 characters is given as `fnv1a64:<hex digest of its UTF-8>`.
errors.txt: one hostile or unsupported input a line, `hex<TAB>text the error message must contain`.
usage: python3 reduction/testdata/gen_golden.py reduction/testdata"""
import collections
import decimal
import os
import pickle
import sys


def values():
    shared_list = [1, 2]
    shared_str = "shared " * 3
    shared_tuple = (1, "x")
    big = [
        0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**63 - 1, -2**63,
        2**63, 2**64 - 1, 2**64, -2**64, 2**127 - 1, -2**127, 2**127, 2**128 - 1, -(2**128 - 1),
    ]
    floats = [
        0.0, -0.0, 1.0, -1.5, 0.1, 1 / 9, 1e16, 1e15, 1e-05, 0.0001, 123456789.125, 1e300, -1e-300,
        5e-324, 1.7976931348623157e308, float("inf"), float("-inf"), 2.5e-5, 3.515625, 39.0625,
    ]
    strs = [
        "", "a", "it's", 'say "hi"', "both ' and \"", "back\\slash", "tab\there\nnew\rline",
        "\x00\x01\x1f\x7f\x80\x9f\xa0\xad", "é ü ñ", "日本語", "emoji \U0001F600", "\u2028\u2029",
        "\ufeff zero width \u200b", "\U000E0001 tag", "x" * 300, "\ud800 lone surrogate",
    ]
    byts = [b"", b"abc", b"\x00\xff\x80\x7f", b"it's", b'"', b"'\"", bytes(range(256)), b"y" * 300]
    yield from [None, True, False]
    yield from big
    yield from floats
    yield from strs
    yield from byts
    yield from [bytearray(), bytearray(b"ab\x00\xff"), bytearray(b"z" * 300)]
    yield from [[], [1], [1, 2], list(range(1000)), list(range(1001)), list(range(2500))]
    yield from [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((1,),), ((1, 2), (3, (4, 5, (6,))))]
    yield from [{}, {1: 2}, {"a": 1, "b": [1, 2]}, {i: str(i) for i in range(1001)}, {(1, 2): frozenset({3})}]
    yield from [set(), {1}, {1, 2, 3}, set(range(1001)), frozenset(), frozenset({1}), frozenset(range(5))]
    yield from [{"a", "b"}, frozenset({"x"}), {(1, 2), (3, 4)}, {1.5, -2, None, b"b"}]
    yield [[], (1, 2)]
    yield ([], (1, 2))
    yield [[], []]
    yield [{}, {}, set(), frozenset()]
    yield [[1, 2], [3, 4], []]
    yield [shared_list, shared_list, [shared_list]]
    yield [shared_str, shared_str, (shared_str,)]
    yield (shared_tuple, shared_tuple)
    yield {"k": shared_list, "j": shared_list}
    yield [b"one", b"one", b"two"]
    yield [bytearray(b"a"), bytearray(b"b")]
    yield [set(), set(), {1}, {2}]
    yield [frozenset({1}), frozenset({2})]
    yield [1, 1.0, True, 0, False]
    yield {"nested": {"deeper": {"deepest": [1, (2, {3: {4}})]}}}
    # Type objects of built-in types, range and slice: what CPython's connection example and manager
    # clients send (`l[1:3]` on a list proxy calls __getitem__ with a slice).
    yield float
    yield [2.25, None, "junk", float]
    yield [int, float, str, bytes, bytearray, bool, list, tuple, dict, set, frozenset, complex, object,
           type, range, slice]
    yield {int: "int", str: range(3), "t": (bool, 1)}
    yield from [range(10), range(0, 10, 2), range(-5), range(10, 0, -3), range(5, 5), range(1, 2, 7),
                range(-2**63, 2**63 - 1, 2**62), range(2**63 - 1)]
    yield from [slice(1, 3, None), slice(None), slice(-1, None, -2), slice(None, 2**70, -1),
                slice(True, 0, 0), slice(2**127, -2**127, None)]
    yield ("__getitem__", (slice(1, 3, None),))
    shared_range = range(4)
    shared_slice = slice(1, 2)
    yield [shared_range, shared_range, [shared_range]]
    yield [shared_slice, shared_slice]
    yield [float, float, [float], int]
    nested = []
    for _ in range(100):
        nested = [nested]
    yield nested
    yield {"a": [1, 2, 3], "b": (4.5, "six"), "c": {"seven", 8}, "d": None}


def big_values():
    """Values that span several frames (protocols 4 and 5 only, to keep the file small)."""
    yield "x" * 66000  # larger than a frame: CPython writes it outside any frame
    yield list(range(25000))  # several frames


def hostile():
    recursive = []
    recursive.append(recursive)
    recursive_dict = {}
    recursive_dict["self"] = recursive_dict
    cases = [
        (b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.", "not allowed"),
        (pickle.dumps(collections.OrderedDict([(1, 2)]), 4), "not allowed"),
        (pickle.dumps(decimal.Decimal("1.5"), 2), "not allowed"),
        (b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.", "not allowed"),
        (pickle.dumps(recursive, 4), "recursive"),
        (pickle.dumps(recursive, 2), "recursive"),
        (pickle.dumps(recursive_dict, 4), "recursive"),
        (pickle.dumps(2**128, 4), "128 bits"),
        (pickle.dumps(-2**128 - 5, 4), "128 bits"),
        (pickle.dumps(2**1000, 4), "128 bits"),
        (pickle.dumps([1, 2, 3], 0), "unsupported pickle opcode"),
        (pickle.dumps([1, 2, 3], 1)[:-1], "truncated"),
        (pickle.dumps("abc", 4)[:-3], "truncated"),
        (pickle.dumps(list(range(100)), 4)[:-5], "truncated"),
        (b"", "truncated"),
        (b"\x80\x06N.", "unsupported pickle protocol"),
        (b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7fabc.", "truncated"),  # absurd BINUNICODE8 length
        (b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xffabc.", "truncated"),  # absurd BINBYTES8 length
        (b"\x80\x04X\xff\xff\xff\xffabc.", "truncated"),
        (b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN.", "truncated"),  # absurd frame
        (b"\x80\x04\x8b\xff\xff\xff\x7f\x00.", "truncated"),  # LONG4 beyond the input
        (b"\x80\x04" + b"(" * 5000 + b"t" * 5000 + b".", "deeper"),
        (b"\x80\x04" + b"]" * 2000 + b"a" * 1999 + b".", "deeper"),
        (b"\x80\x04K\x01" + b"\x85" * 2000 + b".", "deeper"),
        (b"\x80\x04h\x05.", "never stored"),
        (b"\x80\x04a.", "stack underflow"),
        (b"\x80\x04K\x01K\x02.", "exactly one value"),
        (b"\x80\x04\xff.", "unsupported pickle opcode"),
        (b"\x80\x04\x8c\x02\xff\xfe\x94.", "UTF-8"),
        (b"\x80\x04}(]K\x01u.", "unhashable"),
        (b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.", "not allowed"),
        (b"\x80\x02c__builtin__\nset\nK\x01\x85R.", "set() or frozenset() of a int"),
        (b"\x80\x04K\x01R.", "underflow"),
        (b"\x80\x04K\x01)R.", "REDUCE of something"),
        (b"\x80\x04(K\x01u.", "SETITEMS"),
        (pickle.dumps(Exception("x"), 4), "not allowed"),
        (pickle.dumps(range(2**70), 4), "64 bits"),
        (pickle.dumps(range(-2**63 - 1, 0), 2), "64 bits"),
        (pickle.dumps(slice("a", 1), 4), "only slices of None and int"),
        (pickle.dumps(slice(1.5), 2), "only slices of None and int"),
        (b"\x80\x04\x8c\x08builtins\x94\x8c\x05float\x94\x93\x94\x8c\x031.5\x94\x85\x94R\x94.", "not allowed"),
        (b"\x80\x04\x8c\x08builtins\x8c\x08NoneType\x93.", "not allowed"),
        (b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93.", "not allowed"),
        (b"\x80\x02c__builtin__\nreduce\n.", "not allowed"),
        (b"\x80\x02cbuiltins\nxrange\n.", "not allowed"),
        (b"\x80\x04\x8c\x08builtins\x8c\x05range\x93K\x00K\x01K\x00\x87R.", "step of 0"),
        (b"\x80\x04\x8c\x08builtins\x8c\x05range\x93G?\xf8\x00\x00\x00\x00\x00\x00\x85R.", "expected int"),
        (b"\x80\x04\x8c\x08builtins\x8c\x05range\x93(K\x00K\x01K\x01K\x01tR.", "unexpected arguments"),
        (b"\x80\x04\x8c\x08builtins\x8c\x05slice\x93)R.", "unexpected arguments"),
        (b"\x80\x04\x8c\x08builtins\x8c\x04list\x93)R.", "not allowed"),
        (b"\x80\x04\x8c\x08builtins\x8c\x05range\x93\x8c\x03abc\x93.", "STACK_GLOBAL needs two str"),
        (pickle.dumps(1 + 2j, 4), "not allowed"),
    ]
    return cases


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def shown_repr(v):
    r = repr(v)
    if len(r) > 2000:
        return "fnv1a64:" + fnv1a64(r.encode("utf-8", "surrogatepass"))
    return r


def main():
    out = sys.argv[1]
    with open(os.path.join(out, "golden.txt"), "w") as f:
        cases = [(v, range(2, 6)) for v in values()] + [(v, range(4, 6)) for v in big_values()]
        for v, protocols in cases:
            r = shown_repr(v)
            for p in protocols:
                f.write("%d\t%s\t%s\n" % (p, pickle.dumps(v, protocol=p).hex(), r))
    with open(os.path.join(out, "errors.txt"), "w") as f:
        for data, message in hostile():
            f.write("%s\t%s\n" % (data.hex(), message))


if __name__ == "__main__":
    main()
