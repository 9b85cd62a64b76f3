"""Checks the shape of mp_synchronize's output (read from stdin): the order and timing of its lines
depend on scheduling, so each test's section is checked for what it must contain."""
import re
import sys

mode = sys.argv[1]
text = sys.stdin.read()
banner = {"processes": " Using processes ", "manager": " Using processes and a manager ",
          "threads": " Using threads "}[mode].center(79, "-")
errors = []


def expect(ok, what):
    if not ok:
        errors.append(what)


expect(text.startswith(banner + "\n"), "the banner")
names = ["test_value", "test_queue", "test_condition", "test_semaphore", "test_join_timeout",
         "test_event", "test_sharedvalues"]
parts = re.split(r"\n\t######## (\w+)\n\n", text)
expect(parts[1::2] == names, "the sections in order, got %r" % parts[1::2])
sections = dict(zip(parts[1::2], parts[2::2]))


def lines(name):
    return sections.get(name, "").split("\n")


def count(name, pattern):
    return sum(1 for line in lines(name) if re.fullmatch(pattern, line))


expect(count("test_value", r"\t\t\t<.*> has finished") == 10, "test_value: 10 finished")
expect("No more running processes" in lines("test_value"), "test_value: the last line")

tokens = [t for t in sections.get("test_queue", "").split() if t != "TIMEOUT"]
expect(tokens == [str(i * i) for i in range(30)] + ["STOP"], "test_queue: 0 1 4 ... 841 STOP")

cond = [l for l in lines("test_condition")
        if l in ("main is waiting", "\tchild is notifying", "main has woken up")]
expect(cond == ["main is waiting", "\tchild is notifying", "main has woken up"],
       "test_condition: waiting, notifying, woken up")

running = [int(m.group(1)) for l in lines("test_semaphore")
           for m in [re.fullmatch(r"(\d+) tasks are running", l)] if m]
expect(len(running) == 10 and all(1 <= n <= 3 for n in running),
       "test_semaphore: 10 starts with 1 to 3 running, got %r" % running)
expect(count("test_semaphore", r"<.*> has finished") == 10, "test_semaphore: 10 finished")

join = lines("test_join_timeout")
expect("waiting for process to finish" in join and "\tchild sleeping" in join
       and "\tchild terminating" in join, "test_join_timeout: its three lines")

event = lines("test_event")
expect(count("test_event", r"\t<.*> is waiting") == 5, "test_event: 5 waiting")
expect("main is setting event" in event, "test_event: main sets the event")
if "main is setting event" in event:
    after = event[event.index("main is setting event"):]
    expect(sum(1 for l in after if re.fullmatch(r"\t<.*> has woken up", l)) == 5,
           "test_event: 5 woken up after the event is set")

expect("Tests passed" in lines("test_sharedvalues"), "test_sharedvalues: Tests passed")

if errors:
    sys.stderr.write("FAIL: " + "\nFAIL: ".join(errors) + "\n--- output was:\n" + text)
    sys.exit(1)
