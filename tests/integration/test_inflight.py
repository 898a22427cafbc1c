"""test_inflight.py -- requests in flight and kept-alive connections
(SPEC §5: "several requests in flight (max_inflight, 4) ... connections kept
alive"; §11: "max_inflight counts concurrent HTTP requests per route").

The http stub holds each request until four are being answered at once
(or 5 s pass), so the test sees whether the daemon really keeps
max_inflight = 4 requests open, and never more.  400 acked events in
batches of 10 make at least 40 requests; with connections kept alive they
all travel over at most max_inflight TCP connections.
"""

import threading
import time

from harness import Client, Daemon, check, run, wait_until
from stub_upstream import Stub

EVENTS = 400
BATCH = 10
INFLIGHT = 4


def main():
    stub = Stub()
    reached = threading.Event()

    def hold(req, index):
        # wait (bounded) until INFLIGHT requests are open at once
        deadline = time.monotonic() + 5
        while not reached.is_set() and time.monotonic() < deadline:
            if stub.max_concurrent >= INFLIGHT:
                reached.set()
                break
            time.sleep(0.01)
        return 200
    stub.set_handler(hold)

    d = Daemon({"upstream": {"type": "http",
                             "url": "http://127.0.0.1:%d/in" % stub.port,
                             "batch_size": BATCH,
                             "max_inflight": INFLIGHT}}).start()
    c = Client(d.socket)
    c.hello()
    acked = c.send_events(EVENTS, "inflight", timeout=30)

    def delivered():
        got = [e["event_id"] for e in stub.http_events()]
        return got if set(acked) <= set(got) else None
    got = wait_until(delivered, 30, "all %d events delivered" % EVENTS)
    check(len(got) == EVENTS and len(set(got)) == EVENTS,
          "each acked event delivered once", len(got))
    reqs = stub.requests()
    check(all(len(r.body.splitlines()) <= BATCH for r in reqs),
          "no request carries more than batch_size events",
          max(len(r.body.splitlines()) for r in reqs))
    check(len(reqs) >= EVENTS // BATCH,
          "at least %d requests" % (EVENTS // BATCH), len(reqs))
    check(reached.is_set() and stub.max_concurrent == INFLIGHT,
          "exactly max_inflight = %d requests were open at once at most"
          % INFLIGHT, stub.max_concurrent)
    check(stub.connections <= INFLIGHT,
          "connections kept alive: %d requests over at most %d "
          "connections" % (len(reqs), INFLIGHT), stub.connections)
    c.close()
    check(d.stop() == 0, "SIGTERM exits 0")


run(main, deadline=60)
