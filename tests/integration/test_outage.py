"""test_outage.py -- acceptance: a whole upstream outage (SPEC §5, §6, §11).

One sentry route (DSN http://KEY@127.0.0.1:PORT/42, max_inflight 1 so no
request is already in flight when the 429 comes) through the sequence an
outage really has:

1. nothing listens on PORT: connections are refused.  N acked events;
   status shows routes[0].state "backoff" with a last_error about the
   connection (errrelayctl exit 1).
2. a stub starts on PORT and answers K requests 503 (the route backs off
   again; `errrelayctl flush` skips each backoff wait, and the next request
   must come soon after each flush that cut a wait of more than 1.5 s),
   then one 429 carrying both "Retry-After: 3" and
   "X-Sentry-Rate-Limits: 5:error:key": the Sentry header wins (SPEC §11),
   so the window is 5 s, not 3 s.  Then 200.
3. inside the window: status says "rate_limited" with retry_in_s matching
   a 5 s window; `errrelayctl flush` (twice, early and mid-window) does not
   cut it short (SPEC §11) and the state stays "rate_limited".
4. the stub's request log: no request in (t429, t429 + 5 s - 0.05 s); the
   first one after the window arrives within 1.5 s of its end; every acked
   event_id is delivered exactly once, as a well-formed envelope.
5. the sampled states went ok -> backoff -> rate_limited -> ok, and the
   route ends "ok" with an empty spool (exit 0).
"""

import re
import time

from harness import (Client, Daemon, check, counter, fail, free_port,
                     is_number, log, run, wait_until)
from stub_upstream import Stub, parse_envelope

PUBKEY = "0a7a6e5d4c3b2a1908f7e6d5c4b3a291"
N = 12
K = 3                   # 503 answers before the 429
WINDOW = 5.0            # X-Sentry-Rate-Limits: 5:error:key
RETRY_AFTER = 3.0       # Retry-After: 3 (must lose)
SLACK = 0.05            # clock slack at the start of the window
LATE = 1.5              # the first request after the window comes by then


def main():
    port = free_port()
    dsn = "http://%s@127.0.0.1:%d/42" % (PUBKEY, port)
    dm = Daemon({"upstream": {"type": "sentry", "dsn": dsn,
                              "max_inflight": "1"}})
    dm.start()

    samples = []        # (t_before, t_after, rc, route dict)

    def sample():
        t0 = time.time()
        rc, st = dm.status(with_rc=True)
        t1 = time.time()
        routes = st.get("routes") or []
        if len(routes) != 1:
            fail("status --json should list exactly one route, saw %r"
                 % routes)
        r = routes[0]
        samples.append((t0, t1, rc, r))
        return t0, t1, rc, r, st

    def flush():
        t = time.time()
        rc, out, err = dm.ctl("flush")
        check(rc == 0 and re.fullmatch(r"flush: 1 route\(s\) retrying now\n",
                                       out) is not None,
              "errrelayctl flush exits 0 and prints \"flush: 1 route(s) "
              "retrying now\"", (rc, out, err))
        return t

    # ---- 0. idle: ok
    _, _, rc, r, _ = sample()
    check(r.get("name") == "default" and r.get("state") == "ok",
          "before any event the default route is \"ok\"", r)

    # ---- 1. connection refused
    c = Client(dm.socket)
    c.hello(ack=True)
    acked = c.send_events(N, "outage")
    check(len(set(acked)) == N, "%d events acked while the upstream "
          "refuses connections" % N, len(set(acked)))

    def refused_backoff():
        _, _, rc, r, _ = sample()
        if r.get("state") == "backoff" and \
                re.search(r"connect|refused", str(r.get("last_error")),
                          re.I):
            return rc, r
        return None
    rc, r = wait_until(refused_backoff, 15, "routes[0].state \"backoff\" "
                       "with a last_error about the refused connection")
    check(True, "route in backoff while nothing listens", r)
    check(rc == 1, "errrelayctl status exits 1 (degraded) in backoff", rc)
    check(is_number(r.get("retry_in_s")) and r["retry_in_s"] >= 0,
          "retry_in_s is a number >= 0", r.get("retry_in_s"))
    check(r.get("pending") == N, "routes[0].pending == %d (nothing "
          "delivered)" % N, r.get("pending"))

    # ---- 2. the stub on that port: K x 503, one 429, then 200
    limit_headers = {"Retry-After": "%d" % RETRY_AFTER,
                     "X-Sentry-Rate-Limits": "%d:error:key" % WINDOW}

    def behaviour(req, index):
        if index < K:
            return 503
        if index == K:
            return 429, dict(limit_headers)
        return 200

    stub = Stub(port=port)
    stub.set_handler(behaviour)
    log("stub listening on the refused port %d now" % port)

    flushes = []        # (t_sample, retry_in_s, t_flush)
    backoff_errors = []

    def drive_to_429():
        if stub.count(429) >= 1:
            return True
        t0, t1, rc, r, _ = sample()
        if r.get("state") == "backoff":
            if stub.count() > 0:
                backoff_errors.append(str(r.get("last_error")))
            tf = flush()
            flushes.append((t0, r.get("retry_in_s"), tf))
        return False
    wait_until(drive_to_429, 30, "the stub to answer %d x 503 and then the "
               "429 (flushing every backoff)" % K)
    reqs = stub.requests()
    check([q.status for q in reqs[:K + 1]] == [503] * K + [429],
          "the stub answered %d x 503 then 429" % K,
          [q.status for q in reqs])
    t429 = reqs[K].time
    check(any("503" in e for e in backoff_errors),
          "a backoff after a 503 shows the 503 in last_error",
          backoff_errors[-3:])

    # a flush that cut a wait of more than 1.5 s must bring a request soon
    cut = 0
    times = [q.time for q in reqs]
    for ts, ri, tf in flushes:
        if not is_number(ri) or tf - ts > 0.3 or ts + ri - tf < 1.5:
            continue
        nxt = [t for t in times if t > tf]
        if not nxt or nxt[0] > t429 + 0.001:
            continue        # the flush was in the refused phase
        cut += 1
        check(nxt[0] - tf < 1.0, "after a flush that cut a %.1fs backoff "
              "wait, the next request came %.3fs later (< 1 s)"
              % (ts + ri - tf, nxt[0] - tf), nxt[0] - tf)
    log("%d flush(es) in all; %d cut a wait of > 1.5 s and were checked"
        % (len(flushes), cut))

    # ---- 3. inside the window
    def limited():
        t0, t1, rc, r, _ = sample()
        if r.get("state") == "rate_limited":
            return t0, t1, rc, r
        return None
    t0, t1, rc, r = wait_until(limited, 5, "routes[0].state "
                               "\"rate_limited\" after the 429",
                               interval=0.02)
    ri = r.get("retry_in_s")
    lo = t429 + WINDOW - t1 - SLACK
    hi = t429 + WINDOW - t0 + 1.0
    check(is_number(ri) and lo <= ri <= hi and ri <= WINDOW + 0.01,
          "retry_in_s fits a %gs window (X-Sentry-Rate-Limits), not %gs "
          "(Retry-After): expected in [%.2f, %.2f]"
          % (WINDOW, RETRY_AFTER, lo, min(hi, WINDOW)), ri)
    check(rc == 1, "errrelayctl status exits 1 while rate limited", rc)
    check("429" in str(r.get("last_error")),
          "last_error names the 429", r.get("last_error"))

    tf1 = flush()
    check(tf1 < t429 + WINDOW - 1.0, "the first flush came inside the "
          "window (%.2fs after the 429)" % (tf1 - t429), tf1 - t429)
    flushed_mid = []

    def through_window():
        t0, t1, rc, r, _ = sample()
        if t1 < t429 + WINDOW - SLACK and r.get("state") != "rate_limited":
            fail("%.2fs after the 429, inside the %gs window, the state "
                 "is %r (a flush must not cut the window)"
                 % (t1 - t429, WINDOW, r.get("state")))
        if not flushed_mid and t0 >= t429 + WINDOW / 2:
            flushed_mid.append(flush())
        return stub.count() > K + 1
    wait_until(through_window, WINDOW + 10, "a request after the window",
               interval=0.05)
    mid = [t - t429 for t in flushed_mid]
    check(mid and mid[0] < WINDOW - 0.5,
          "a second flush came mid-window, and the state stayed "
          "\"rate_limited\" to the end of the window", mid)

    # ---- 4. delivered, and the request log
    ackset = set(acked)

    def all_delivered():
        got = [h["event_id"] for h, _, _, _ in stub.sentry_envelopes()]
        return got if ackset <= set(got) else None
    got = wait_until(all_delivered, 20, "every acked event delivered")
    check(len(got) == N and set(got) == ackset,
          "each of the %d acked events delivered exactly once, and "
          "nothing else" % N, (len(got), len(set(got) - ackset)))
    log("stub: %s" % stub.summary())
    reqs = stub.requests()
    for q in reqs:
        if q.method != "POST" or q.path != "/api/42/envelope/":
            fail("request should be POST /api/42/envelope/, saw %s %s"
                 % (q.method, q.path))
        parse_envelope(q.body)
    check(True, "every request a well-formed envelope to /api/42/envelope/",
          len(reqs))
    check(stub.count(429) == 1 and stub.count(503) == K,
          "one 429 and %d 503s in all" % K,
          (stub.count(429), stub.count(503)))
    after = [q.time - t429 for q in reqs[K + 1:]]
    inside = [a for a in after if a < WINDOW - SLACK]
    check(not inside, "no request inside the %gs window after the 429 "
          "(first came %.3fs after it)" % (WINDOW, min(after)), after[:5])
    check(min(after) >= RETRY_AFTER + 1.0,
          "the Retry-After: 3 beside X-Sentry-Rate-Limits was not used",
          min(after))
    check(min(after) <= WINDOW + LATE, "the first request after the window "
          "came within %gs of its end (%.3fs after the 429)"
          % (LATE, min(after)), min(after))

    # ---- 5. back to ok
    def recovered():
        _, _, rc, r, st = sample()
        if r.get("state") == "ok" and st.get("spool", {}).get("rows") == 0:
            return rc, r, st
        return None
    rc, r, st = wait_until(recovered, 15, "routes[0].state back to \"ok\" "
                           "and spool.rows == 0")
    check(rc == 0, "errrelayctl status exits 0 once delivering again", rc)
    check(r.get("pending") == 0 and r.get("delivered") == N,
          "routes[0].pending == 0 and delivered == %d" % N,
          (r.get("pending"), r.get("delivered")))
    check(counter(st, "delivered") == N, "counters.delivered == %d" % N,
          counter(st, "delivered"))
    retried = counter(st, "retried")
    check(is_number(retried) and retried >= K + 2,
          "counters.retried >= %d (>= 1 refused attempt, %d x 503, the "
          "429; one event each)" % (K + 2, K), retried)

    seq = []
    for _, _, _, rr in samples:
        s = rr.get("state")
        if not seq or seq[-1] != s:
            seq.append(s)
    log("sampled states (%d samples): %s" % (len(samples), " -> ".join(seq)))
    want = ["ok", "backoff", "rate_limited", "ok"]
    i = 0
    for s in seq:
        if i < len(want) and s == want[i]:
            i += 1
    check(i == len(want), "the states went ok -> backoff -> rate_limited "
          "-> ok", seq)
    check(seq[-1] == "ok" and
          set(seq) <= {"ok", "backoff", "rate_limited"},
          "no other state was seen, and the last is ok", seq)
    first_rl = seq.index("rate_limited")
    check("backoff" not in seq[first_rl:],
          "no backoff after the rate limit (the 200s reset it)", seq)

    c.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


if __name__ == "__main__":
    run(main, deadline=90)
