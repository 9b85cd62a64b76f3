"""Runs mp_webserver on a free port, fetches files over loopback, and stops it with SIGINT: it must
exit 0 and leave none of its worker processes behind. Every wait has a deadline."""
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

DEADLINE = 20.0


class Lines:
    """Lines read from a pipe, each wait bounded by DEADLINE."""

    def __init__(self, fd):
        self.fd = fd
        self.buffer = b""

    def readline(self):
        end = time.monotonic() + DEADLINE
        while b"\n" not in self.buffer:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError("no line within %s s (have %r)" % (DEADLINE, self.buffer))
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise AssertionError("end of output (have %r)" % self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode(errors="replace")


def raw_request(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        s.sendall(data)
        reply = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return reply
            reply += chunk


def children_of(parent):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open("/proc/%s/stat" % entry).read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(entry)
    return pids


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as work:
        root = os.path.join(work, "root")
        os.makedirs(os.path.join(root, "sub"))
        with open(os.path.join(root, "hello.txt"), "w") as f:
            f.write("hello from mp_webserver\n")
        with open(os.path.join(root, "sub", "index.html"), "w") as f:
            f.write("<p>sub</p>\n")
        with open(os.path.join(work, "outside.txt"), "w") as f:
            f.write("not served\n")
        proc = subprocess.Popen([binary, "0", root], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            out = Lines(proc.stdout.fileno())
            err = Lines(proc.stderr.fileno())
            line = out.readline()
            m = re.fullmatch(r"Serving at http://localhost:(\d+) using 4 worker processes", line)
            assert m, line
            port = int(m.group(1))
            assert out.readline() == "To exit press Ctrl-C"

            # Four servers start: the main process and its three children.
            names = set()
            while len(names) < 4:
                line = err.readline()
                m = re.fullmatch(r"\[(\S+)\]\tstarting server", line)
                assert m, line
                names.add(m.group(1))
            assert names == {"MainProcess", "Process-1", "Process-2", "Process-3"}, names
            children = children_of(proc.pid)
            assert len(children) >= 3, children

            url = "http://127.0.0.1:%d" % port
            for _ in range(8):
                with urllib.request.urlopen(url + "/hello.txt", timeout=DEADLINE) as r:
                    assert r.status == 200
                    assert r.read() == b"hello from mp_webserver\n"
                    assert r.headers["Content-Type"] == "text/plain"
            with urllib.request.urlopen(url + "/sub/", timeout=DEADLINE) as r:
                assert r.read() == b"<p>sub</p>\n"
            with urllib.request.urlopen(url + "/", timeout=DEADLINE) as r:
                listing = r.read().decode()
                assert "hello.txt" in listing and "sub/" in listing, listing
            try:
                urllib.request.urlopen(url + "/missing.txt", timeout=DEADLINE)
                raise AssertionError("expected 404")
            except urllib.error.HTTPError as e:
                assert e.code == 404, e.code
            # ".." is dropped: nothing outside the directory is served.
            reply = raw_request(port, b"GET /../outside.txt HTTP/1.0\r\n\r\n")
            assert reply.startswith(b"HTTP/1.0 404 "), reply[:80]
            reply = raw_request(port, b"\x00\xff\xfe garbage\r\n\r\n")
            assert reply.startswith(b"HTTP/1.0 400 "), reply[:80]
            reply = raw_request(port, b"DELETE /hello.txt HTTP/1.0\r\n\r\n")
            assert reply.startswith(b"HTTP/1.0 501 "), reply[:80]
            with urllib.request.urlopen(url + "/hello.txt", timeout=DEADLINE) as r:
                assert r.read() == b"hello from mp_webserver\n"

            # Each request was logged with the name of the process that served it.
            logged = 0
            while logged < 15:
                line = err.readline()
                assert re.fullmatch(r'\[(MainProcess|Process-[123])\]\t".*" \d{3} (\d+|-)', line), line
                logged += 1

            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=DEADLINE) == 0, proc.returncode
            for pid in children:
                assert not os.path.exists("/proc/%s" % pid), "worker %s left behind" % pid
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    print("PASS")


if __name__ == "__main__":
    main()
