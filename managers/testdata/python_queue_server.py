"""The documentation's remote QueueManager server, in CPython, for the C++ clients of managers_test.

Serves on 127.0.0.1 at the port given (0: a free one), prints the port, and serves until its stdin
closes. Besides the doc's 'get_queue' it registers 'Maths', whose child() returns a proxy
(method_to_typeid), so that a C++ client meets every reply kind of CPython's server.
"""
import queue
import sys
import threading
from multiprocessing.managers import BaseManager

shared_queue = queue.Queue()


class Maths:
    def add(self, a, b):
        return a + b

    def fail(self):
        raise KeyError('nope')

    def child(self):
        return Maths()

    def broken(self):
        return threading.Lock()  # cannot be pickled: '#UNSERIALIZABLE'


class QueueManager(BaseManager):
    pass


QueueManager.register('get_queue', callable=lambda: shared_queue)
QueueManager.register('Maths', callable=Maths, method_to_typeid={'child': 'Child'})
# As CPython's docs do for proxies returned by methods: no callable, not creatable.
QueueManager.register('Child', method_to_typeid={'child': 'Child'}, create_method=False)

if __name__ == '__main__':
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
    m = QueueManager(address=('127.0.0.1', port), authkey=b'abracadabra')
    server = m.get_server()
    print(server.address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    # What the server still holds, for the client's reference counting checks.
    print(len(server.id_to_obj) - 1, flush=True)
