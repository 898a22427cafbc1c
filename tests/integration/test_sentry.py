"""test_sentry.py -- acceptance (e): Sentry envelopes, and the DSN key kept
secret.

The upstream is a DSN http://PUBKEY@127.0.0.1:PORT/42.  20 acked events
(some with their own event_id, uppercase with dashes) must arrive as one
well-formed envelope each at /api/42/envelope/, with X-Sentry-Auth
(sentry_version=7, sentry_key=PUBKEY) and Content-Type
application/x-sentry-envelope; each envelope's event_id is the acked one.
The key must never show in the daemon's log, in errrelayd -t, or in
errrelayctl status (text or --json).
"""

import calendar
import re
import subprocess
import time

from harness import (Client, Daemon, binaries, check, fail, is_event_id,
                     log, run, wait_until)
from stub_upstream import Stub

PUBKEY = "5ec4e7a1b2c3d4e5f60718293a4b5c6d"
N = 20


def sent_at_epoch(s):
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)$",
                 s)
    t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    if m.group(2):
        t += float(m.group(2))
    z = m.group(3)
    if z != "Z":
        sign = 1 if z[0] == "+" else -1
        hh, mm = int(z[1:3]), int(z[-2:])
        t -= sign * (hh * 3600 + mm * 60)
    return t


def main():
    stub = Stub(200)
    dsn = "http://%s@127.0.0.1:%d/42" % (PUBKEY, stub.port)
    dm = Daemon({"upstream": {"type": "sentry", "dsn": dsn}})

    d, _ = binaries()
    p = subprocess.run([d, "-t", "-c", dm.confpath], capture_output=True,
                       timeout=15)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    check(p.returncode == 0, "errrelayd -t accepts the sentry config",
          (p.returncode, out.strip()))
    check(PUBKEY not in out, "errrelayd -t output does not show the DSN key",
          out.strip())

    dm.start()
    c = Client(dm.socket)
    c.hello(ack=True)
    given = {}
    for i in range(N):
        ev = {"message": "sentry event %d" % i}
        if i % 4 == 0:
            raw = "%08X-ABCD-4EF0-9%03X-%012X" % (i + 1, i, i * 7919)
            ev["event_id"] = raw
            given[i] = raw.replace("-", "").lower()
        c.send({"op": "event", "id": i, "event": ev})
    acked = {}
    for i, r in enumerate(c.replies(N, timeout=20)):
        if r.get("id") != i or r.get("ok") is not True or \
                not is_event_id(r.get("event_id")):
            fail("reply for event %d should be ok with event_id: %r"
                 % (i, r))
        if i in given and r["event_id"] != given[i]:
            fail("event %d sent with event_id %s: ack should carry it "
                 "normalised as %s, saw %s"
                 % (i, "(dashed uppercase)", given[i], r["event_id"]))
        acked[r["event_id"]] = i
    check(len(acked) == N, "%d events acked; the given event_ids "
          "normalised to 32 lowercase hex in the acks" % N, len(acked))

    def all_there():
        envs = stub.sentry_envelopes()
        got = {h["event_id"] for h, _, _, _ in envs}
        return envs if set(acked) <= got else None
    envs = wait_until(all_there, 20, "an envelope for each acked event")
    check(len(envs) == N, "exactly one envelope per event, %d in all" % N,
          len(envs))

    reqs = stub.requests()
    check(not stub.decode_errors(), "every body decoded",
          stub.decode_errors())
    for r in reqs:
        if r.method != "POST" or r.path != "/api/42/envelope/":
            fail("request should be POST /api/42/envelope/, saw %s %s"
                 % (r.method, r.path))
        auth = r.headers.get("x-sentry-auth", "")
        if "sentry_version=7" not in auth or \
                ("sentry_key=%s" % PUBKEY) not in auth:
            fail("X-Sentry-Auth should carry sentry_version=7 and "
                 "sentry_key=PUBKEY, saw %r" % auth)
        ct = r.headers.get("content-type", "")
        if ct.split(";")[0].strip() != "application/x-sentry-envelope":
            fail("Content-Type should be application/x-sentry-envelope, "
                 "saw %r" % ct)
    check(True, "every request: POST /api/42/envelope/, X-Sentry-Auth with "
          "sentry_version=7 and sentry_key, envelope Content-Type",
          "%d requests" % len(reqs))
    log("one X-Sentry-Auth: %s" % reqs[0].headers.get("x-sentry-auth"))
    log("Content-Encoding of the requests: %s"
        % sorted({str(r.headers.get("content-encoding")) for r in reqs}))

    for h, ih, ev, r in envs:
        i = acked.get(h["event_id"])
        if i is None:
            fail("envelope for an event that was not acked: %s" % h)
        if ev.get("message") != "sentry event %d" % i:
            fail("envelope %s should hold event %d, holds %r"
                 % (h["event_id"], i, ev.get("message")))
        t = sent_at_epoch(h["sent_at"])
        if abs(t - r.time) > 300:
            fail("sent_at %s is not the send time (request received at %f)"
                 % (h["sent_at"], r.time))
    check(True, "every envelope well formed (header event_id == payload "
          "event_id == acked one, sent_at at send time, item type event, "
          "length exact)", "%d envelopes" % len(envs))

    for args in (("status",), ("status", "--json")):
        rc, out, err = dm.ctl(*args)
        check(rc in (0, 1), "errrelayctl %s answers" % " ".join(args),
              (rc, err.strip()))
        check(PUBKEY not in out + err, "errrelayctl %s does not show the "
              "DSN key" % " ".join(args), "%d bytes of output" % len(out))
    c.close()
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)
    text = dm.log_text()
    check(PUBKEY not in text, "the daemon's log does not show the DSN key",
          "%d bytes of log" % len(text))


if __name__ == "__main__":
    run(main, deadline=60)
