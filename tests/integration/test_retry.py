"""test_retry.py -- acceptance (d): a failing upstream is retried.

The stub answers 503 to its first K requests, and keeps answering 503
until the test has seen the route in backoff through status --json (so
the check cannot miss a short jittered window); then 200.  100 acked
events must all be delivered, the stub must have answered at least K 503s,
status must have shown routes[0].state "backoff" (errrelayctl exit 1:
degraded), counters.retried >= 1, and the route back to "ok" (exit 0).
"""

import threading

from harness import (Client, Daemon, check, counter,
                     is_number, log, run, wait_until)
from stub_upstream import Stub

N = 100
K = 3


def main():
    seen_backoff = threading.Event()

    def behaviour(req, index):
        if index < K or not seen_backoff.is_set():
            return 503
        return 200

    stub = Stub()
    stub.set_handler(behaviour)
    dm = Daemon({"upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port}})
    dm.start()
    c = Client(dm.socket)
    c.hello(ack=True)
    acked = c.send_events(N, "retry")
    check(len(set(acked)) == N, "%d events acked" % N, len(set(acked)))

    def in_backoff():
        rc, st = dm.status(with_rc=True)
        routes = st.get("routes") or []
        if routes and routes[0].get("state") == "backoff":
            return rc, routes[0]
        return None
    rc, route = wait_until(in_backoff, 20, "status routes[0].state == "
                           "\"backoff\" while the upstream answers 503",
                           interval=0.02)
    seen_backoff.set()
    log("route in backoff: %s" % route)
    check(True, "status showed routes[0].state == \"backoff\"",
          route.get("state"))
    check(route.get("name") == "default",
          "the [upstream] route is named \"default\"", route.get("name"))
    check(is_number(route.get("retry_in_s")) and route["retry_in_s"] >= 0,
          "routes[0].retry_in_s is a number >= 0", route.get("retry_in_s"))
    check(rc == 1, "errrelayctl status exits 1 (degraded) while the "
          "upstream is in backoff", rc)

    def all_delivered():
        got = [e.get("event_id") for e in stub.http_events()]
        return got if set(acked) <= set(got) else None
    got = wait_until(all_delivered, 30, "all %d events delivered after "
                     "the upstream recovers" % N)
    check(True, "all %d acked events delivered" % N, len(got))
    n503 = stub.count(503)
    check(n503 >= K, "the stub answered 503 at least %d times" % K, n503)
    log("stub: %s" % stub.summary())

    rc, st = dm.wait_drained(15)
    retried = counter(st, "retried")
    check(is_number(retried) and retried >= 1, "status counters.retried >= 1",
          retried)
    check(rc == 0, "errrelayctl status exits 0 once healthy again", rc)
    c.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


if __name__ == "__main__":
    run(main, deadline=60)
