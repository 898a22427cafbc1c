"""test_fibers.py -- acceptance (a): fibers on one connection never mix.

200 fibers share ONE connection, as they share one thread in a fiber
server.  Each fiber i sets tags {fiber: i, req: r<i>}, user {id: u<i>},
extra {n: i}, three crumbs "crumb i.k", then sends one event; the ops of
different fibers are interleaved in a random order (fixed, printed seed),
each fiber's own ops staying in order.  Every delivered event must carry
exactly its own fiber's tags, user, extra and crumbs: zero contamination.
"""

import random

from harness import (Client, Daemon, check, fail, is_event_id, log, run,
                     wait_until)
from stub_upstream import Stub

NFIBERS = 200
SEED = 20240611


def fiber_ops(i):
    f = str(i)
    ops = [
        {"op": "set", "fiber": f, "tags": {"fiber": f, "req": "r%d" % i}},
        {"op": "set", "fiber": f, "user": {"id": "u%d" % i}},
        {"op": "set", "fiber": f, "extra": {"n": i}},
    ]
    for k in range(3):
        ops.append({"op": "crumb", "fiber": f,
                    "crumb": {"message": "crumb %d.%d" % (i, k),
                              "category": "test"}})
    ops.append({"op": "event", "fiber": f, "id": "ev%d" % i,
                "event": {"message": "event of fiber %d" % i}})
    return ops


def main():
    rnd = random.Random(SEED)
    log("random seed %d" % SEED)
    stub = Stub(200)
    dm = Daemon({"upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port}})
    dm.start()

    pending = {i: fiber_ops(i) for i in range(NFIBERS)}
    order = []
    while pending:
        i = rnd.choice(list(pending))
        order.append(pending[i].pop(0))
        if not pending[i]:
            del pending[i]
    log("sending %d ops of %d fibers interleaved on one connection"
        % (len(order), NFIBERS))
    switches = sum(1 for a, b in zip(order, order[1:])
                   if a["fiber"] != b["fiber"])
    log("consecutive ops from different fibers: %d of %d"
        % (switches, len(order) - 1))

    c = Client(dm.socket)
    c.hello(ack=True)
    for m in order:
        c.send(m)
    event_order = [m["id"] for m in order if m["op"] == "event"]
    acked = {}
    for want, r in zip(event_order, c.replies(NFIBERS, timeout=30)):
        if r.get("id") != want or r.get("ok") is not True or \
                not is_event_id(r.get("event_id")):
            fail("reply for %s should be ok with event_id, in order: %r"
                 % (want, r))
        acked[r["event_id"]] = int(want[2:])
    check(len(acked) == NFIBERS, "%d events acked, distinct event_ids"
          % NFIBERS, len(acked))

    def all_there():
        evs = stub.http_events()
        return evs if set(acked) <= {e.get("event_id") for e in evs} \
            else None
    evs = wait_until(all_there, 25, "all %d events at the stub" % NFIBERS)
    check(len(evs) == NFIBERS, "%d events delivered" % NFIBERS, len(evs))

    checked = 0
    for ev in evs:
        eid = ev.get("event_id")
        if eid not in acked:
            fail("delivered an event that was not acked: %r" % ev)
        i = acked[eid]
        what = "event of fiber %d (%s)" % (i, eid)
        if ev.get("message") != "event of fiber %d" % i:
            fail("%s: acked event_id delivered with message %r"
                 % (what, ev.get("message")))
        want_tags = {"fiber": str(i), "req": "r%d" % i}
        if ev.get("tags") != want_tags:
            fail("%s: tags should be exactly %r, saw %r"
                 % (what, want_tags, ev.get("tags")))
        if ev.get("user") != {"id": "u%d" % i}:
            fail("%s: user should be {'id': 'u%d'}, saw %r"
                 % (what, i, ev.get("user")))
        if ev.get("extra") != {"n": i}:
            fail("%s: extra should be {'n': %d}, saw %r"
                 % (what, i, ev.get("extra")))
        bc = ev.get("breadcrumbs")
        if not isinstance(bc, dict) or not isinstance(bc.get("values"),
                                                      list):
            fail("%s: breadcrumbs should be {\"values\": [...]}, saw %r"
                 % (what, bc))
        msgs = [b.get("message") for b in bc["values"]]
        want = ["crumb %d.%d" % (i, k) for k in range(3)]
        if msgs != want:
            fail("%s: crumbs should be %r in order, saw %r"
                 % (what, want, msgs))
        checked += 1
    check(checked == NFIBERS,
          "zero contamination: each event has only its own fiber's tags, "
          "user, extra and crumbs", "%d events checked" % checked)
    c.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


if __name__ == "__main__":
    run(main, deadline=60)
