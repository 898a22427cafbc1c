"""test_spool_full.py -- the spool bound (SPEC §5, §7, §11).

The http upstream answers 503, so nothing leaves the spool; max_spool_bytes
is 64 KiB and every event carries a 1 KiB message.

1. overflow = reject: 200 acked events.  Some are answered ok, the rest
   spool_full (no other answer).  status --json: stored +
   rejected.spool_full == 200, stored == the ok replies, nothing dropped,
   spool.bytes <= 64 KiB.
2. overflow = drop_oldest: 200 acked events are all answered ok and all
   stored; the oldest were dropped to make room: dropped.overflow > 0,
   spool.rows + dropped.overflow == 200, spool.bytes <= 64 KiB.
3. max_age = 1 s (503 upstream, no size bound reached): 5 acked events are
   expired within seconds: dropped.expired == 5, spool.rows == 0.
"""

from harness import (Client, Daemon, ack_event, check, counter, log, run,
                     subdir, wait_until)
from stub_upstream import Stub

MAX = 64 * 1024
N = 200
PAD = "x" * 1024


def daemon(name, overflow, stub):
    d = subdir(name)
    dm = Daemon({"daemon": {"max_spool_bytes": MAX, "overflow": overflow},
                 "upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port}}, dir=d)
    dm.start()
    return dm


def send_all(dm, tag):
    """Send N acked 1 KiB events; return (ok ids, spool_full ids, other)."""
    c = Client(dm.socket)
    c.hello(ack=True)
    ok, full, other = [], [], []
    for i in range(N):
        c.send({"op": "event", "id": i,
                "event": {"message": "%s %d %s" % (tag, i, PAD)}})
    for r in c.replies(N, timeout=30):
        if r.get("ok") is True:
            ok.append(r.get("id"))
        elif r.get("error") == "spool_full":
            full.append(r.get("id"))
        else:
            other.append(r)
    c.close()
    return ok, full, other


def reject():
    log("== part 1: overflow = reject")
    stub = Stub(503)
    dm = daemon("reject", "reject", stub)
    ok, full, other = send_all(dm, "reject")
    log("ok %d, spool_full %d" % (len(ok), len(full)))
    check(not other, "every reply is ok or spool_full", other[:3])
    check(len(ok) + len(full) == N, "one reply per event", len(ok) + len(full))
    check(len(ok) > 0, "the first events fit and are acked", len(ok))
    check(len(full) > 0, "past 64 KiB, events are answered spool_full",
          len(full))
    check(len(ok) < MAX // 1024, "fewer than 64 events of 1 KiB fit",
          len(ok))
    st = dm.status()
    stored = counter(st, "stored")
    rej = counter(st, "rejected", "spool_full")
    log("status counters: %s spool: %s" % (st.get("counters"),
                                           st.get("spool")))
    check(stored == len(ok), "counters.stored == ok replies",
          (stored, len(ok)))
    check(rej == len(full), "counters.rejected.spool_full == spool_full "
          "replies", (rej, len(full)))
    check(stored + rej == N, "stored + rejected.spool_full == 200",
          (stored, rej))
    check(counter(st, "accepted") == len(ok),
          "a spool_full rejection is not counted as accepted",
          counter(st, "accepted"))
    check((counter(st, "dropped", "overflow") or 0) == 0,
          "reject drops nothing", counter(st, "dropped"))
    sp = st.get("spool", {})
    check(sp.get("rows") == len(ok), "spool.rows == stored events",
          sp.get("rows"))
    check(0 < sp.get("bytes", 0) <= MAX, "spool.bytes <= 64 KiB",
          sp.get("bytes"))
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


def drop_oldest():
    log("== part 2: overflow = drop_oldest")
    stub = Stub(503)
    dm = daemon("drop", "drop_oldest", stub)
    ok, full, other = send_all(dm, "drop")
    check(len(ok) == N and not full and not other,
          "all 200 events acked ok", (len(ok), len(full), other[:3]))
    st = dm.status()
    log("status counters: %s spool: %s" % (st.get("counters"),
                                           st.get("spool")))
    stored = counter(st, "stored")
    dropped = counter(st, "dropped", "overflow")
    sp = st.get("spool", {})
    check(stored == N, "counters.stored == 200", stored)
    check(isinstance(dropped, int) and dropped > 0,
          "counters.dropped.overflow > 0", dropped)
    check(sp.get("rows") + dropped == N,
          "spool.rows + dropped.overflow == 200", (sp.get("rows"), dropped))
    check(0 < sp.get("bytes", 0) <= MAX, "spool.bytes <= 64 KiB",
          sp.get("bytes"))
    check((counter(st, "rejected", "spool_full") or 0) == 0,
          "drop_oldest rejects nothing", counter(st, "rejected"))
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


def max_age():
    log("== part 3: max_age = 1 s")
    stub = Stub(503)
    d = subdir("age")
    dm = Daemon({"daemon": {"max_age": 1},
                 "upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port}}, dir=d)
    dm.start()
    c = Client(dm.socket)
    c.hello(ack=True)
    for i in range(5):
        ack_event(c, {"message": "old %d" % i}, i)
    c.close()

    def expired():
        st = dm.status()
        if counter(st, "dropped", "expired") == 5 and \
                st.get("spool", {}).get("rows") == 0:
            return st
        return None
    st = wait_until(expired, 20,
                    "dropped.expired == 5 and spool.rows == 0")
    check(counter(st, "stored") == 5, "the 5 events were stored first",
          counter(st, "stored"))
    check(counter(st, "dropped", "overflow") == 0,
          "expiry is not counted as overflow", counter(st, "dropped"))
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


def main():
    reject()
    drop_oldest()
    max_age()


if __name__ == "__main__":
    run(main, deadline=60)
