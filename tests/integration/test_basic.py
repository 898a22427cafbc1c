"""test_basic.py -- the daemon's whole path, end to end.

1. file upstream, fire-and-forget client: a set then an event reach the
   outbox merged (the set's tags, a filled event_id, level, platform,
   timestamp); SIGTERM exits 0.
2. http upstream: 50 acked events all arrive, gzip-encoded, each acked
   event_id delivered exactly once; status --json counts them and the
   spool drains to 0 rows; SIGTERM exits 0.
3. http upstream with batch_size = 10, max_inflight = 1: a backlog of 200
   drains request after request, no batch over 10, never two at once.
4. SIGTERM right after 100 acks: exit 0, and the last flush delivered
   them all before the exit.
5. SIGTERM commits what clients already wrote: with the daemon stopped
   (SIGSTOP), a client writes 3000 events and closes; SIGTERM + SIGCONT:
   all 3000 reach the outbox before the exit.
"""

import signal

import os

from harness import (Client, Daemon, check, counter, is_event_id,
                     is_number, log, read_ndjson, run, subdir, wait_until)
from stub_upstream import Stub, parse_ndjson


def file_upstream():
    log("== part 1: file upstream, no ack")
    d = subdir("file")
    outbox = os.path.join(d, "outbox.ndjson")
    dm = Daemon({"upstream": {"type": "file", "path": outbox}}, dir=d)
    dm.start()
    c = Client(dm.socket)
    c.send({"op": "set", "fiber": "f1",
            "tags": {"color": "blue", "shard": "7"}})
    c.send({"op": "event", "fiber": "f1",
            "event": {"message": "basic file event",
                      "extra": {"k": "v"}}})

    def delivered():
        evs = [e for e in read_ndjson(outbox)
               if e.get("message") == "basic file event"]
        return evs
    evs = wait_until(delivered, 20, "the event in %s" % outbox)
    check(len(evs) == 1, "the event is in the outbox exactly once", len(evs))
    ev = evs[0]
    log("delivered: %s" % ev)
    tags = ev.get("tags")
    check(isinstance(tags, dict) and tags.get("color") == "blue"
          and tags.get("shard") == "7",
          "merged event carries the set's tags color=blue shard=7", tags)
    check(is_event_id(ev.get("event_id")),
          "event_id filled: 32 lowercase hex", ev.get("event_id"))
    check(ev.get("level") == "error", "level defaults to \"error\"",
          ev.get("level"))
    check(ev.get("platform") == "other", "platform filled as \"other\"",
          ev.get("platform"))
    check(is_number(ev.get("timestamp")), "timestamp is a JSON number",
          ev.get("timestamp"))
    check(ev.get("extra") == {"k": "v"},
          "the event's own extra passes through", ev.get("extra"))
    c.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


def http_upstream():
    log("== part 2: http upstream, 50 acked events")
    d = subdir("http")
    stub = Stub(200)
    dm = Daemon({"upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port}}, dir=d)
    dm.start()
    c = Client(dm.socket)
    c.hello(ack=True)
    acked = []
    for i in range(50):
        c.send({"op": "event", "id": i,
                "event": {"message": "basic http %d" % i}})
    for i, r in enumerate(c.replies(50, timeout=20)):
        if r.get("id") != i or r.get("ok") is not True \
                or not is_event_id(r.get("event_id")):
            check(False, "reply %d is {id:%d, ok:true, event_id}" % (i, i), r)
        acked.append(r["event_id"])
    check(len(set(acked)) == 50, "50 distinct acked event_ids, in order",
          len(set(acked)))

    def all_there():
        got = [e.get("event_id") for e in stub.http_events()]
        return got if set(acked) <= set(got) else None
    got = wait_until(all_there, 20, "all 50 acked events at the http stub")
    for eid in acked:
        if got.count(eid) != 1:
            check(False, "event %s delivered exactly once" % eid,
                  got.count(eid))
    check(True, "each of the 50 acked event_ids delivered exactly once")
    check(len(got) == 50, "no other events delivered", len(got))
    by_id = {e["event_id"]: e for e in stub.http_events()}
    for i, eid in enumerate(acked):
        if by_id[eid].get("message") != "basic http %d" % i:
            check(False, "acked event_id %s is event %d" % (eid, i),
                  by_id[eid].get("message"))
    check(True, "each acked event_id names the event it acked")
    check(not stub.decode_errors(), "every body decoded",
          stub.decode_errors())
    reqs = stub.requests()
    check(all(r.method == "POST" and r.path == "/ingest" for r in reqs),
          "every request is POST /ingest",
          [(r.method, r.path) for r in reqs])
    check(all(r.headers.get("content-encoding") == "gzip" for r in reqs),
          "gzip = yes (default): every body has Content-Encoding: gzip",
          [r.headers.get("content-encoding") for r in reqs])

    def drained():
        st = dm.status()
        if (counter(st, "delivered") or 0) >= 50 and \
                st.get("spool", {}).get("rows") == 0:
            return st
        return None
    st = wait_until(drained, 15,
                    "status counters.delivered >= 50 and spool.rows == 0")
    cn = st.get("counters", {})
    log("status counters: %s" % cn)
    for k in ("received", "accepted", "stored", "delivered"):
        check(is_number(cn.get(k)) and cn.get(k) >= 50,
              "status counters.%s >= 50" % k, cn.get(k))
    check(st["spool"]["rows"] == 0, "spool.rows back to 0", st["spool"])
    c.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


def http_backlog():
    log("== part 3: http upstream, batch_size = 10, max_inflight = 1: "
        "a backlog of 200 events drains batch after batch")
    d = subdir("backlog")
    stub = Stub(200)
    dm = Daemon({"upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port,
                              "batch_size": 10, "max_inflight": 1}}, dir=d)
    dm.start()
    c = Client(dm.socket)
    c.hello(ack=True)
    for i in range(200):
        c.send({"op": "event", "id": i,
                "event": {"message": "backlog %d" % i}})
    acked = set()
    for i, r in enumerate(c.replies(200, timeout=20)):
        if r.get("id") != i or r.get("ok") is not True:
            check(False, "reply %d is {id:%d, ok:true, event_id}" % (i, i), r)
        acked.add(r.get("event_id"))

    def all_there():
        got = {e.get("event_id") for e in stub.http_events()}
        return got if acked <= got else None
    wait_until(all_there, 20, "all 200 events at the stub, one request "
               "at a time (each next request is started when the previous "
               "one ends)")
    sizes = [len(parse_ndjson(r.body)) for r in stub.requests()]
    log("events per request: %s" % sizes)
    check(all(1 <= n <= 10 for n in sizes), "no request carries more "
          "than batch_size = 10 events", max(sizes))
    check(len(sizes) >= 20, "200 events took at least 20 requests",
          len(sizes))
    check(stub.max_concurrent <= 1, "max_inflight = 1: never two requests "
          "at once", stub.max_concurrent)
    c.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


def sigterm_flush():
    log("== part 4: SIGTERM right after the acks: the last flush delivers")
    d = subdir("sigterm")
    stub = Stub(200)
    dm = Daemon({"upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port}}, dir=d)
    dm.start()
    c = Client(dm.socket)
    c.hello(ack=True)
    for i in range(100):
        c.send({"op": "event", "id": i,
                "event": {"message": "sigterm %d" % i}})
    acked = {r.get("event_id") for r in c.replies(100, timeout=20)}
    rc = dm.stop()
    check(rc == 0, "SIGTERM right after 100 acks: daemon exits 0", rc)
    got = {e.get("event_id") for e in stub.http_events()}
    check(acked <= got, "the 100 acked events were delivered before the "
          "daemon exited (commit, then one last flush)",
          "%d of 100" % len(acked & got))
    c.close()


def sigterm_drain():
    log("== part 5: SIGTERM commits what the kernel holds for the daemon")
    d = subdir("drain")
    outbox = os.path.join(d, "outbox.ndjson")
    dm = Daemon({"upstream": {"type": "file", "path": outbox}}, dir=d)
    dm.start()
    pid = dm.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        c = Client(dm.socket)
        c.send_raw(b"".join(
            b'{"op":"event","fiber":%d,"event":{"message":"drain %d"}}\n'
            % (i, i) for i in range(3000)))
    finally:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)
    rc = dm.stop()
    check(rc == 0, "SIGTERM: exit 0", rc)
    got = {e.get("message") for e in read_ndjson(outbox)}
    n = sum(1 for i in range(3000) if "drain %d" % i in got)
    check(n == 3000, "all 3000 events written before SIGTERM delivered", n)


def main():
    sigterm_drain()
    file_upstream()
    http_upstream()
    http_backlog()
    sigterm_flush()


if __name__ == "__main__":
    run(main, deadline=60)
