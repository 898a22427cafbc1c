"""test_protocol.py -- the data protocol's answers to bad and odd lines.

Over one ack connection: every error code a line can earn (bad_json:
invalid JSON, a top-level array, invalid UTF-8, nesting over 64;
line_too_long with max_line_bytes = 1K; bad_op; bad_field; too_large with
max_event_bytes = 2K), each reply carrying "id" when the message had a
valid one and "line" exactly when not, line numbers counting blank lines;
a message without id answered only on failure; a rejected set applies
none of its keys; hello repeated, last wins, a rejected hello changes
nothing; the connection stays usable and other clients are unaffected; a
last line without newline is processed on SHUT_WR; status --json counts
every rejection by code.
"""

import json
import os

from harness import (Client, Daemon, check, counter, fail, is_event_id, log,
                     read_ndjson, run, tmpdir, wait_until)
from stub_upstream import Stub

rejected = {}


def expect(c, what, ok, id=None, line=None, error=None):
    """Read the next reply on c and check it, including the id/line rule."""
    r = c.next_reply(10)
    good = r.get("ok") is ok
    if id is not None:
        good = good and r.get("id") == id and "line" not in r
    else:
        good = good and "id" not in r and r.get("line") == line
    if not ok:
        good = good and r.get("error") == error and \
            isinstance(r.get("message"), str)
        rejected[error] = rejected.get(error, 0) + 1
    want = {"ok": ok}
    if id is not None:
        want["id"] = id
    else:
        want["line"] = line
    if error:
        want["error"] = error
    check(good, "%s -> %s" % (what, json.dumps(want)), r)
    return r


def nested(depth):
    """A JSON object of exactly depth levels."""
    return {} if depth == 1 else {"a": nested(depth - 1)}


def line(obj):
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def main():
    stub = Stub(200)
    other = os.path.join(tmpdir(), "other.ndjson")
    dm = Daemon({"daemon": {"max_line_bytes": "1K",
                            "max_event_bytes": "2K"},
                 "upstream": {"type": "http",
                              "url": "http://127.0.0.1:%d/ingest"
                              % stub.port},
                 "route other": {"type": "file", "path": other}})
    dm.start()

    b = Client(dm.socket, name="B")
    b.send({"op": "hello", "ack": True, "id": "hb"})
    expect(b, "B: hello with id", True, id="hb")

    a = Client(dm.socket, name="A")
    acked = {}   # message -> event_id

    n = a.hello(ack=True)
    check(n == 1, "A: hello (no id) is line 1", n)

    n = a.next_line()
    a.send_raw(b'{"id":5,"op":\n')
    expect(a, "line %d: truncated JSON" % n, False, line=n, error="bad_json")
    n = a.next_line()
    a.send_raw(b'[{"op":"hello"}]\n')
    expect(a, "line %d: top level is an array" % n, False, line=n,
           error="bad_json")
    n = a.next_line()
    a.send_raw(b'{"op":"set","fiber":"u","tags":{"a":"\xff\xfe"}}\n')
    expect(a, "line %d: invalid UTF-8" % n, False, line=n, error="bad_json")

    a.send_raw(b"\n")
    log("sent a blank line (line %d)" % (a.next_line() - 1))

    a.send_raw(b'{"op":"frobnicate","id":"a"}\n')
    expect(a, "unknown op", False, id="a", error="bad_op")
    a.send_raw(b'{"id":"b"}\n')
    expect(a, "missing op", False, id="b", error="bad_op")
    a.send_raw(b'{"op":7,"id":"b2"}\n')
    expect(a, "non-string op", False, id="b2", error="bad_op")
    a.send_raw(b'{"op":"SET","id":"b3"}\n')
    expect(a, "op names are case-sensitive", False, id="b3", error="bad_op")

    a.send({"op": "set", "id": "c", "fiber": "x" * 129, "tags": {"k": "v"}})
    expect(a, "fiber of 129 bytes", False, id="c", error="bad_field")

    n = a.next_line()
    pad = 5000 - len(line({"op": "set", "id": "big", "fiber": "p",
                           "tags": {"pad": ""}}))
    big = line({"op": "set", "id": "big", "fiber": "p",
                "tags": {"pad": "x" * pad}})
    check(len(big) == 5000, "built a 5000-byte line", len(big))
    a.send_raw(big)
    n2 = a.send({"op": "set", "id": "after", "fiber": "p",
                 "tags": {"t": "1"}})
    expect(a, "line %d: 5000 bytes with max_line_bytes = 1K" % n, False,
           line=n, error="line_too_long")
    expect(a, "line %d: the good line after it, answered in order" % n2,
           True, id="after")

    a.send({"op": "set", "id": "badtag", "fiber": "p",
            "tags": {"good": "g", "bad": {"x": 1}}})
    expect(a, "set with one tag value an object", False, id="badtag",
           error="bad_field")
    n = a.send({"op": "set", "fiber": "p", "tags": [1]})
    expect(a, "line %d: failing message without id" % n, False, line=n,
           error="bad_field")
    a.send({"op": "crumb", "fiber": "p", "crumb": {"message": "c1"}})
    n = a.send({"op": "set", "fiber": "p", "id": {"x": 1}})
    expect(a, "line %d: (the crumb without id before it got no reply) an "
           "id that is an object is not echoed" % n, False, line=n,
           error="bad_field")
    n = a.send({"op": "set", "fiber": "p", "id": "i" * 65})
    expect(a, "line %d: a 65-byte string id is not echoed" % n, False,
           line=n, error="bad_field")
    id64 = "j" * 64
    a.send({"op": "set", "fiber": "p", "id": id64, "tags": {"id64": "yes"}})
    expect(a, "a 64-byte string id is valid and echoed", True, id=id64)
    a.send({"op": "end", "fiber": "no-such-fiber", "id": "end1"})
    expect(a, "end of an unknown fiber succeeds", True, id="end1")
    a.send({"op": "fork", "fiber": "p", "from": "p", "id": "fork1"})
    expect(a, "fork of a fiber onto itself succeeds", True, id="fork1")
    a.send({"op": "event", "fiber": "p", "id": "ev1",
            "event": {"message": "proto ev1"}})
    r = expect(a, "event on fiber p", True, id="ev1")
    acked["proto ev1"] = r.get("event_id")

    n = a.next_line()
    a.send_raw(line({"op": "set", "fiber": "q", "extra": nested(64)}))
    expect(a, "line %d: nesting of 65 levels" % n, False, line=n,
           error="bad_json")
    a.send_raw(line({"op": "set", "id": "deep64", "fiber": "q",
                     "extra": nested(63)}))
    expect(a, "nesting of exactly 64 levels is accepted", True, id="deep64")

    # hello repeated: the last one wins; a rejected one changes nothing
    a.send({"op": "hello", "ack": True, "app": "other", "id": "h2"})
    expect(a, "hello again, app \"other\"", True, id="h2")
    a.send({"op": "event", "id": "ev2", "event": {"message": "proto ev2"}})
    acked["proto ev2"] = expect(a, "event routed by app", True,
                                id="ev2").get("event_id")
    a.send({"op": "hello", "ack": True, "app": 5, "id": "h3"})
    expect(a, "hello with a non-string app", False, id="h3",
           error="bad_field")
    a.send({"op": "event", "id": "ev3", "event": {"message": "proto ev3"}})
    acked["proto ev3"] = expect(a, "event after the rejected hello", True,
                                id="ev3").get("event_id")
    a.send({"op": "hello", "ack": True, "app": "default", "id": "h4"})
    expect(a, "hello again, app \"default\"", True, id="h4")
    a.send({"op": "event", "id": "ev4", "event": {"message": "proto ev4"}})
    acked["proto ev4"] = expect(a, "event on the default route", True,
                                id="ev4").get("event_id")

    # 123 and "123" name the same fiber
    a.send({"op": "set", "fiber": 123, "id": "n1", "tags": {"num": "yes"}})
    expect(a, "set on integer fiber 123", True, id="n1")
    a.send({"op": "event", "fiber": "123", "id": "ev5",
            "event": {"message": "proto ev5"}})
    acked["proto ev5"] = expect(a, "event on string fiber \"123\"", True,
                                id="ev5").get("event_id")

    # too_large: a scope grown past max_event_bytes by sets under 1K each
    for k in range(3):
        a.send({"op": "set", "fiber": "big", "id": "big%d" % k,
                "extra": {"p%d" % k: "y" * 900}})
        expect(a, "set of a 900-byte extra value", True, id="big%d" % k)
    a.send({"op": "event", "fiber": "big", "id": "evbig",
            "event": {"message": "proto evbig"}})
    expect(a, "event merged to over 2K (max_event_bytes)", False,
           id="evbig", error="too_large")

    # the connection is still fine after all that
    a.send({"op": "event", "fiber": "p", "id": "ev6",
            "event": {"message": "proto ev6"}})
    acked["proto ev6"] = expect(a, "connection A still works after errors",
                                True, id="ev6").get("event_id")

    # B was never disturbed; its own hello repeated turns ack off then on
    b.send({"op": "hello", "ack": False})
    b.send_raw(b"nope\n")
    rejected["bad_json"] = rejected.get("bad_json", 0) + 1
    b.send({"op": "hello", "ack": True, "id": "hb2"})
    expect(b, "B: ack off, a bad line (no reply), ack on again: the next "
           "reply is the hello's", True, id="hb2")
    b.send({"op": "event", "id": "evB", "event": {"message": "proto evB"}})
    acked["proto evB"] = expect(b, "B: event unaffected by A's errors",
                                True, id="evB").get("event_id")

    # a last line without newline, processed on SHUT_WR
    cc = Client(dm.socket, name="C")
    cc.send({"op": "hello", "ack": True, "id": "hc"})
    expect(cc, "C: hello", True, id="hc")
    cc.send_raw(b'{"op":"event","id":"last","event":'
                b'{"message":"proto last"}}')
    cc.shutdown_write()
    acked["proto last"] = expect(cc, "C: last line without newline, after "
                                 "shutdown(SHUT_WR)", True,
                                 id="last").get("event_id")
    log("C: daemon closed the connection after the half-close: %s"
        % cc.wait_eof(5))

    for m, eid in acked.items():
        check(is_event_id(eid), "ack of %r has an event_id" % m, eid)

    to_stub = ["proto ev1", "proto ev4", "proto ev5", "proto ev6",
               "proto evB", "proto last"]
    to_file = ["proto ev2", "proto ev3"]

    def delivered():
        s = {e.get("message"): e for e in stub.http_events()}
        f = {e.get("message"): e for e in read_ndjson(other)}
        if set(to_stub) <= set(s) and set(to_file) <= set(f):
            return s, f
        return None
    s, f = wait_until(delivered, 20, "the events at the stub and in %s"
                      % other)
    check(sorted(s) == sorted(to_stub), "the default route got exactly "
          "the events sent while app was \"default\"", sorted(s))
    check(sorted(f) == sorted(to_file), "route \"other\" got exactly the "
          "events sent after hello app \"other\" (the rejected hello "
          "changed nothing)", sorted(f))
    for m, ev in list(s.items()) + list(f.items()):
        if ev.get("event_id") != acked[m]:
            fail("%s delivered with event_id %s, acked %s"
                 % (m, ev.get("event_id"), acked[m]))
    check(True, "every delivered event_id is the acked one")
    ev1 = s["proto ev1"]
    check(ev1.get("tags") == {"t": "1", "id64": "yes"},
          "ev1 has the good sets' tags only: the rejected set (good + bad "
          "tag) and the too-long line applied nothing", ev1.get("tags"))
    crumbs = [x.get("message") for x in
              (ev1.get("breadcrumbs") or {}).get("values", [])]
    check(crumbs == ["c1"], "ev1 has the crumb sent without id", crumbs)
    check(s["proto ev5"].get("tags") == {"num": "yes"},
          "fiber 123 and \"123\" are the same scope",
          s["proto ev5"].get("tags"))

    st = dm.status()
    rej = counter(st, "rejected") or {}
    log("status counters.rejected: %s; expected %s" % (rej, rejected))
    for code, want in sorted(rejected.items()):
        check(rej.get(code) == want, "counters.rejected.%s == %d"
              % (code, want), rej.get(code))
    for code in ("spool_full", "shutting_down"):
        check(rej.get(code, 0) == 0, "counters.rejected.%s is 0" % code,
              rej.get(code))
    for cl in (a, b, cc):
        cl.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)


if __name__ == "__main__":
    run(main, deadline=60)
