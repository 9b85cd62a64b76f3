#!/usr/bin/env python3
"""The CPython side of //reduction:differential_test.

generate SEED N OUT: makes N random values (and typed cases) with a fixed seed and writes, for every value
  and protocol 2..5, `kind<TAB>protocol<TAB>hex of pickle.dumps(value, protocol)<TAB>repr(value)`.
  kind is `obj` (decoded as reduction::Object) or `typed:<name>` (decoded as a C++ type, see the test).
check SEED N IN: makes the same values again and reads the C++ re-encodings, one a line
  `index<TAB>protocol<TAB>hex` (index into the generated lines); loads each with pickle.loads and compares
  it with the original (types included). Prints each mismatch; exits 1 if there is any."""
import math
import pickle
import random
import sys

PROTOCOLS = range(2, 6)


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.pool = []  # earlier values, reused to make shared sub-objects

    def int_(self):
        r = self.r
        kind = r.randrange(6)
        if kind == 0:
            return r.randrange(256)
        if kind == 1:
            return r.randrange(-2**31, 2**31)
        if kind == 2:
            return r.randrange(-2**63, 2**63)
        if kind == 3:
            return r.randrange(-2**127, 2**127)
        if kind == 4:
            return r.choice([0, -1, 2**64, 2**128 - 1, -(2**128 - 1), 2**63, -2**63 - 1, 65535, 65536])
        return r.randrange(-1000, 1000)

    def float_(self):
        r = self.r
        kind = r.randrange(7)
        if kind == 0:
            return r.random()
        if kind == 1:
            return r.uniform(-1e6, 1e6)
        if kind == 2:
            return r.choice([0.0, -0.0, math.inf, -math.inf, 1e16, 1e-5, 0.1, 5e-324, 1.7976931348623157e308])
        if kind == 3:
            return float(r.randrange(-10**17, 10**17))
        if kind == 4:
            return r.random() * 10.0 ** r.randrange(-320, 300)
        if kind == 5:
            return round(r.uniform(-100, 100), r.randrange(6))
        return -r.random() * 10.0 ** r.randrange(-30, 30)

    def char(self):
        r = self.r
        kind = r.randrange(10)
        if kind < 5:
            return chr(r.randrange(32, 127))
        if kind == 5:
            return chr(r.randrange(0, 32))
        if kind == 6:
            return chr(r.randrange(127, 256))
        if kind == 7:
            c = r.randrange(256, 0xD800)
            return chr(c)
        if kind == 8:
            return chr(r.randrange(0xE000, 0x110000))
        return r.choice(["'", '"', "\\", "\u2028", "\ud800", "\udfff", "\U000E0001", "\ufeff"])

    def str_(self):
        return "".join(self.char() for _ in range(self.r.randrange(12)))

    def bytes_(self):
        return bytes(self.r.randrange(256) for _ in range(self.r.randrange(12)))

    def hashable(self, depth):
        r = self.r
        kind = r.randrange(8)
        if kind == 0:
            return self.int_()
        if kind == 1:
            return self.str_()
        if kind == 2:
            return self.bytes_()
        if kind == 3:
            return self.float_()
        if kind == 4 and depth > 0:
            return tuple(self.hashable(depth - 1) for _ in range(r.randrange(4)))
        if kind == 5 and depth > 0:
            return frozenset(self.hashable(depth - 1) for _ in range(r.randrange(4)))
        return r.choice([None, True, False])

    def special(self):
        """A type object of a built-in type, a range or a slice."""
        r = self.r
        kind = r.randrange(3)
        if kind == 0:
            return r.choice([int, float, str, bytes, bytearray, bool, list, tuple, dict, set, frozenset,
                             complex, object, type, range, slice])
        if kind == 1:
            bound = lambda: r.randrange(-2**63, 2**63) if r.random() < 0.2 else r.randrange(-50, 50)
            step = 0
            while step == 0:
                step = bound()
            return range(bound(), bound(), step)
        member = lambda: None if r.random() < 0.3 else self.int_()
        return slice(member(), member(), member())

    def value(self, depth):
        r = self.r
        if self.pool and r.random() < 0.08:
            return r.choice(self.pool)
        kind = r.randrange(15 if depth > 0 else 9)
        if kind == 0:
            v = self.int_()
        elif kind == 1:
            v = self.float_()
        elif kind == 2:
            v = self.str_()
        elif kind == 3:
            v = self.bytes_()
        elif kind == 4:
            v = bytearray(self.bytes_())
        elif kind == 5:
            v = r.choice([None, True, False])
        elif kind == 6:
            v = self.hashable(1)
        elif kind == 7:
            v = r.choice([[], (), {}, set(), frozenset(), "", b""])
        elif kind == 14 or (kind == 8 and depth == 0):
            v = self.special()
        elif kind in (8, 9):
            v = [self.value(depth - 1) for _ in range(r.randrange(6))]
        elif kind == 10:
            v = tuple(self.value(depth - 1) for _ in range(r.randrange(6)))
        elif kind == 11:
            v = {self.hashable(1): self.value(depth - 1) for _ in range(r.randrange(5))}
        elif kind == 12:
            v = {self.hashable(1) for _ in range(r.randrange(6))}
        else:
            v = frozenset(self.hashable(1) for _ in range(r.randrange(6)))
        if isinstance(v, (list, dict, str, tuple, range, slice)) and r.random() < 0.3:
            self.pool.append(v)
        return v

    def typed(self):
        """(kind, value) pairs for the C++ types the test decodes into."""
        r = self.r
        n = r.randrange(8)
        i64 = lambda: r.randrange(-2**63, 2**63) if r.random() < 0.3 else r.randrange(-70000, 70000)
        yield "ints", [i64() for _ in range(r.choice([n, 1000, 1001, 2001]))]
        yield "strs", [self.str_() for _ in range(n)]
        yield "map", {self.str_(): [self.float_() for _ in range(r.randrange(4))] for _ in range(n)}
        yield "tuple", (i64(), self.str_(), self.float_(), r.random() < 0.5, r.choice([None, i64()]))
        yield "set", {i64() for _ in range(n)}
        yield "nested", [[i64() for _ in range(r.randrange(4))] for _ in range(n)]
        yield "bytes", [self.bytes_() for _ in range(n)]
        yield "pairs", [(self.str_(), i64()) for _ in range(n)]


def cases(seed, n):
    g = Gen(seed)
    out = []
    for _ in range(n):
        out.append(("obj", g.value(4)))
    for _ in range(max(1, n // 10)):
        for kind, v in g.typed():
            out.append(("typed:" + kind, v))
    return out


def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        return all(any(same(k, k2) for k2 in b) and same(v, b[k]) for k, v in a.items())
    return a == b


def main():
    mode, seed, n, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    all_cases = cases(seed, n)
    lines = []
    for kind, v in all_cases:
        for p in PROTOCOLS:
            lines.append((kind, p, v))
    if mode == "generate":
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            for kind, p, v in lines:
                f.write("%s\t%d\t%s\t%s\n" % (kind, p, pickle.dumps(v, protocol=p).hex(), repr(v)))
        return 0
    bad = 0
    seen = 0
    with open(path) as f:
        for line in f:
            index, p, data = line.rstrip("\n").split("\t")
            kind, _, v = lines[int(index)]
            seen += 1
            try:
                got = pickle.loads(bytes.fromhex(data))
            except Exception as e:  # noqa: BLE001 - report every failure
                print("line %s (%s): CPython cannot load the C++ pickle (protocol %s): %r" % (index, kind, p, e))
                bad += 1
                continue
            if not same(got, v):
                print("line %s (%s, protocol %s): got %r, expected %r" % (index, kind, p, got, v))
                bad += 1
    if seen != len(lines):
        print("expected %d re-encodings, got %d" % (len(lines), seen))
        bad += 1
    print("checked %d pickles, %d mismatches" % (seen, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
