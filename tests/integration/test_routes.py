"""test_routes.py -- acceptance: two routes, one down; the other delivers
at full speed (SPEC §5 "Upstreams, per route", §11 "Backoff and rate
limits are per route").

Config: [upstream] (route "default", http) to stub A, [route shop] (http)
to stub B.  Two connections send N events each at the same time, one
with no app (route default), one whose hello says app "shop".

Two runs, each with a fresh daemon and stubs:
- baseline: A and B answer 200.  Time until B holds all of shop's events.
- A down: A answers 503.  B must still receive all of shop's events, in
  a time not much worse than the baseline (< 3 x baseline + 1 s, a
  generous bound for a busy 2-core box; both are printed with the rate),
  while A's route stays "backoff" with pending == N and nothing delivered.
  status --json lists both routes, each with its own state.
  Since N events go by in a fraction of a second, that alone would not
  catch a backoff shared between routes; so next, flushes drive A's
  route (each flush: one more 503, the wait doubles) into a backoff of
  >= 10 s, and N2 more shop events are sent: B must receive them all
  while default stays in that same wait (no request to A meanwhile,
  pending still N).  Then A answers 200 again, `errrelayctl flush` (A's
  first 200 must come within 2 s: the flush cut the long wait), and all
  of default's events reach A.
In both runs each stub receives exactly its route's events (event_ids
and messages) and nothing of the other's.
"""

import threading
import time

from harness import (Client, Daemon, check, counter, fail, log, run,
                     subdir, wait_until)
from stub_upstream import Stub

N = 2000
N2 = 500        # more shop events while default is in a long backoff
LONG = 10.0     # seconds of backoff default is driven into first


def start(name, stub_a, stub_b):
    dm = Daemon({"upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/default"
                              % stub_a.port},
                 "route shop": {"type": "http",
                                "url": "http://127.0.0.1:%d/shop"
                                % stub_b.port}}, dir=subdir(name))
    dm.start()
    return dm


def send_both(dm):
    """Send N acked events on each route at once; returns (t0, acked
    default ids, acked shop ids, clients)."""
    ca = Client(dm.socket, name="default-client")
    ca.hello(ack=True)
    cb = Client(dm.socket, name="shop-client")
    cb.hello(ack=True, app="shop")
    out = {}

    def sender(key, client, label):
        try:
            out[key] = client.send_events(N, label, timeout=60)
        except BaseException as e:
            out[key] = e
    ta = threading.Thread(target=sender, args=("default", ca, "default"))
    tb = threading.Thread(target=sender, args=("shop", cb, "shop"))
    t0 = time.time()
    ta.start()
    tb.start()
    ta.join(90)
    tb.join(90)
    for key in ("default", "shop"):
        v = out.get(key)
        if isinstance(v, BaseException):
            raise v
        if v is None:
            fail("the %s sender did not finish" % key)
    t_acked = time.time() - t0
    log("both connections acked %d events each in %.2fs" % (N, t_acked))
    return t0, out["default"], out["shop"], (ca, cb)


def check_events(stub, label, acked, other, what, n_more=0):
    """stub received exactly the acked events of label (N "LABEL event I"
    and n_more "LABEL more event I"), nothing of other."""
    evs = stub.http_events()
    ids = [e.get("event_id") for e in evs]
    check(set(ids) == set(acked) and len(ids) == len(acked),
          "%s: stub %s received each of its %d events once, nothing else"
          % (what, label, len(acked)),
          (len(ids), len(set(ids)), len(set(ids) - set(acked))))
    check(not set(ids) & set(other), "%s: stub %s received none of the "
          "other route's events" % (what, label),
          len(set(ids) & set(other)))
    want = {"%s event %d" % (label, i) for i in range(N)}
    want |= {"%s more event %d" % (label, i) for i in range(n_more)}
    msgs = {e.get("message") for e in evs}
    check(msgs == want, "%s: every event at stub %s is a \"%s event I\" "
          "message, all %d of them" % (what, label, label, len(want)),
          sorted(msgs - want)[:3])


def last_ok_time(stub):
    return max(r.time for r in stub.requests() if r.ok())


def routes_by_name(st):
    out = {}
    for r in st.get("routes") or []:
        out[r.get("name")] = r
    return out


def baseline():
    log("=== baseline: both upstreams up")
    a, b = Stub(200), Stub(200)
    dm = start("baseline", a, b)
    t0, acked_a, acked_b, clients = send_both(dm)
    ida, idb = set(acked_a), set(acked_b)
    wait_until(lambda: ida <= {e.get("event_id") for e in a.http_events()}
               and idb <= {e.get("event_id") for e in b.http_events()},
               60, "both stubs to receive all their events")
    tb = last_ok_time(b) - t0
    ta = last_ok_time(a) - t0
    log("baseline: B (shop) had all %d events %.2fs after the start "
        "(%.0f events/s); A (default) %.2fs"
        % (N, tb, N / tb, ta))
    check_events(a, "default", acked_a, acked_b, "baseline")
    check_events(b, "shop", acked_b, acked_a, "baseline")
    for c in clients:
        c.close()
    rc = dm.stop()
    check(rc == 0, "baseline daemon exits 0 on SIGTERM", rc)
    a.close()
    b.close()
    return tb


def a_down(tb_base):
    log("=== A down: the default upstream answers 503")
    a, b = Stub(503), Stub(200)
    dm = start("down", a, b)
    t0, acked_a, acked_b, clients = send_both(dm)
    ida, idb = set(acked_a), set(acked_b)
    check(not ida & idb, "the two routes' event_ids are distinct",
          len(ida & idb))
    seen = {"samples": 0}

    def b_done():
        st = dm.status()
        rs = routes_by_name(st)
        d = rs.get("default") or {}
        if d.get("delivered") != 0 or \
                not (0 <= (d.get("pending") or 0) <= N):
            fail("while A answers 503 the default route must deliver "
                 "nothing and hold at most %d: %r" % (N, d))
        seen["samples"] += 1
        got = {e.get("event_id") for e in b.http_events()}
        return idb <= got
    wait_until(b_done, 60, "stub B to receive all of shop's events while "
               "A is down", interval=0.05)
    tb = last_ok_time(b) - t0
    log("A down: B (shop) had all %d events %.2fs after the start "
        "(%.0f events/s); baseline %.2fs (%.0f events/s)"
        % (N, tb, N / tb, tb_base, N / tb_base))
    check(tb < 3 * tb_base + 1.0, "with A down, B's time %.2fs < 3 x "
          "baseline %.2fs + 1 s" % (tb, tb_base), tb)
    check(a.count() >= 1 and a.count(200) == 0,
          "A was tried and answered only 503", a.summary())
    check_events(b, "shop", acked_b, acked_a, "A down")

    def both_listed():
        rc, st = dm.status(with_rc=True)
        rs = routes_by_name(st)
        if rs.get("shop", {}).get("pending") == 0 and \
                rs.get("default", {}).get("state") == "backoff":
            return rc, st, rs
        return None
    rc, st, rs = wait_until(both_listed, 15, "status: shop pending 0 and "
                            "default in backoff")
    log("status routes: %s" % st.get("routes"))
    check(sorted(rs) == ["default", "shop"] and
          len(st.get("routes")) == 2,
          "status --json lists the two routes, default and shop",
          sorted(rs))
    d, s = rs["default"], rs["shop"]
    check(d.get("type") == "http" and s.get("type") == "http",
          "both routes have type http", (d.get("type"), s.get("type")))
    check(d.get("state") == "backoff" and s.get("state") == "ok",
          "each route has its own state: default backoff, shop ok",
          (d.get("state"), s.get("state")))
    check(d.get("pending") == N and d.get("delivered") == 0,
          "default: pending == %d (all it was sent), delivered 0" % N,
          (d.get("pending"), d.get("delivered")))
    check("503" in str(d.get("last_error")), "default's last_error names "
          "the 503", d.get("last_error"))
    check(s.get("delivered") == N and s.get("pending") == 0,
          "shop: delivered == %d, pending 0" % N,
          (s.get("delivered"), s.get("pending")))
    check(s.get("last_error") is None, "shop has no last_error",
          s.get("last_error"))
    check(rc == 1, "errrelayctl status exits 1 (degraded: a route in "
          "backoff)", rc)
    check(st.get("spool", {}).get("rows") == N, "spool.rows == %d "
          "(default's events only)" % N, st.get("spool"))
    log("%d status samples while B delivered; A saw %d request(s)"
        % (seen["samples"], a.count()))

    # A shared backoff would hold B until A's wait ends.  Drive A's
    # backoff long (each flush makes A fail once more: the wait doubles),
    # then send more of shop's events: B must get them all while A is
    # still in that same wait, with no request to A meanwhile.
    def long_backoff():
        d = routes_by_name(dm.status()).get("default") or {}
        ri = d.get("retry_in_s")
        if d.get("state") == "backoff" and isinstance(ri, (int, float)) \
                and ri >= LONG:
            return d
        if d.get("state") == "backoff":
            frc, out, err = dm.ctl("flush")
            if frc != 0:
                fail("errrelayctl flush failed: %r" % ((frc, out, err),))
        return None
    d = wait_until(long_backoff, 30, "the default route in a backoff of "
                   ">= %gs (flushing after each 503)" % LONG)
    ca, cb = clients
    log("default in backoff for %.1fs after %d request(s) to A"
        % (d["retry_in_s"], a.count()))
    n_a = a.count()
    t1 = time.time()
    more = cb.send_events(N2, "shop more", timeout=30)
    idm = set(more)

    def b_more():
        rs = routes_by_name(dm.status())
        dd = rs.get("default") or {}
        if dd.get("state") != "backoff" or dd.get("pending") != N or \
                dd.get("delivered") != 0:
            fail("while B delivers, default must stay in backoff with "
                 "pending %d: %r" % (N, dd))
        got = {e.get("event_id") for e in b.http_events()}
        return idm <= got
    wait_until(b_more, 30, "stub B to receive %d more shop events while "
               "default waits out its backoff" % N2)
    tm = last_ok_time(b) - t1
    log("B had the %d more events %.2fs after they were sent (%.0f "
        "events/s)" % (N2, tm, N2 / tm))
    check(a.count() == n_a, "no request to A while B delivered (A's "
          "backoff wait was not cut)", (n_a, a.count()))
    check(len(b.http_events()) == N + N2, "B holds shop's %d events once "
          "each" % (N + N2), len(b.http_events()))
    acked_b = list(acked_b) + more
    idb = set(acked_b)

    log("--- A comes back")
    a.set_status(200)
    d = routes_by_name(dm.status()).get("default") or {}
    check(d.get("state") == "backoff" and d.get("retry_in_s", 0) > 3.0,
          "default is still in its long backoff before the flush",
          (d.get("state"), d.get("retry_in_s")))
    t_flush = time.time()
    frc, out, err = dm.ctl("flush")
    check(frc == 0 and out == "flush: 2 route(s) retrying now\n",
          "errrelayctl flush exits 0: \"flush: 2 route(s) retrying now\"",
          (frc, out, err))
    wait_until(lambda: ida <= {e.get("event_id") for e in a.http_events()},
               30, "stub A to receive all of default's events after the "
               "flush")
    first_ok = min(r.time for r in a.requests() if r.ok())
    check(first_ok - t_flush < 2.0, "the flush cut default's backoff "
          "(%.1fs left): A's first 200 came %.3fs after it"
          % (d["retry_in_s"], first_ok - t_flush), first_ok - t_flush)
    check_events(a, "default", acked_a, acked_b, "A back")
    check_events(b, "shop", acked_b, acked_a, "A back", n_more=N2)

    def recovered():
        rc, st = dm.status(with_rc=True)
        rs = routes_by_name(st)
        if all(rs.get(n, {}).get("state") == "ok" and
               rs.get(n, {}).get("pending") == 0
               for n in ("default", "shop")):
            return rc, st, rs
        return None
    rc, st, rs = wait_until(recovered, 15, "both routes ok with nothing "
                            "pending")
    check(rs["default"].get("delivered") == N and
          rs["shop"].get("delivered") == N + N2,
          "default delivered %d, shop %d" % (N, N + N2),
          (rs["default"].get("delivered"), rs["shop"].get("delivered")))
    check(counter(st, "delivered") == 2 * N + N2,
          "counters.delivered == %d" % (2 * N + N2), counter(st, "delivered"))
    check(rc == 0, "errrelayctl status exits 0 once both deliver", rc)
    for c in clients:
        c.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


def main():
    tb_base = baseline()
    a_down(tb_base)


if __name__ == "__main__":
    run(main, deadline=120)
