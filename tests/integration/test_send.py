"""test_send.py -- errrelayctl send, the C client library end to end.

1. With the daemon up: `errrelayctl send --fiber F --tag k=v... MESSAGE`
   (data socket found through the control socket's status answer) exits
   0 and prints one 32-hex event_id, and that event reaches the file
   upstream with the message, level "error" and the tags given.
2. --socket, --app (routes to [route shop]) and --level: the event lands
   in the route's outbox, its text (quotes, newline, UTF-8) intact.
3. Refusals exit 1 with one line: the daemon's too_large (max_event_bytes
   = 2K) names its code; a fiber id over 128 bytes is refused before
   anything is sent.
4. With the daemon stopped: exit 2, nothing on stdout, one line on stderr
   saying it cannot connect to the socket and asking whether errrelayd is
   running.
"""

import os

from harness import (Daemon, check, is_event_id, log, read_ndjson, run,
                     subdir, wait_until)


def one_line(s):
    lines = s.splitlines()
    return len(lines) == 1 and lines[0].strip() != ""


def delivered(path, eid):
    """The events of the NDJSON file path whose event_id is eid."""
    return [e for e in read_ndjson(path) if e.get("event_id") == eid]


def main():
    d = subdir("send")
    outbox = os.path.join(d, "outbox.ndjson")
    shop = os.path.join(d, "shop.ndjson")
    dm = Daemon({"daemon": {"max_event_bytes": "2K"},
                 "upstream": {"type": "file", "path": outbox},
                 "route shop": {"type": "file", "path": shop}}, dir=d)
    dm.start()

    log("== part 1: send through the socket the daemon names")
    rc, out, err = dm.ctl("send", "--fiber", "f1", "--tag", "color=blue",
                          "--tag", "shard=7", "--tag", "color=green",
                          "send test one")
    check(rc == 0, "send exits 0", (rc, out, err))
    eid = out.strip()
    check(one_line(out) and is_event_id(eid),
          "send prints one line: a 32-hex event_id", out)
    check(err == "", "send prints nothing on stderr", err)
    evs = wait_until(lambda: delivered(outbox, eid), 20,
                     "event %s in %s" % (eid, outbox))
    check(len(evs) == 1, "the acked event is delivered once", len(evs))
    ev = evs[0]
    log("delivered: %s" % ev)
    check(ev.get("message") == "send test one", "its message", ev)
    check(ev.get("level") == "error", "level \"error\" by default",
          ev.get("level"))
    tags = ev.get("tags") or {}
    check(tags.get("color") == "green" and tags.get("shard") == "7",
          "the tags given (a repeated --tag: the last wins)", tags)

    log("== part 2: --socket, --app, --level, odd text")
    text = 'multi\nline "quoted" \\ caf\u00e9 \u65e5\u672c'
    rc, out, err = dm.ctl("send", "--socket", dm.socket, "--app", "shop",
                          "--level", "warning", "--tag", "q=a \"b\"",
                          text)
    check(rc == 0, "send --socket --app shop exits 0", (rc, out, err))
    eid2 = out.strip()
    check(is_event_id(eid2) and eid2 != eid, "a new event_id", out)
    evs = wait_until(lambda: delivered(shop, eid2), 20,
                     "event %s in the shop route's %s" % (eid2, shop))
    ev = evs[0]
    check(ev.get("message") == text, "the message arrives unchanged",
          ev.get("message"))
    check(ev.get("level") == "warning", "--level warning", ev.get("level"))
    check((ev.get("tags") or {}).get("q") == 'a "b"', "tag q", ev.get("tags"))
    check(delivered(outbox, eid2) == [],
          "app shop is not routed to the default upstream")

    log("== part 3: refusals exit 1")
    rc, out, err = dm.ctl("send", "x" * 3000)
    check(rc == 1, "an event over max_event_bytes: exit 1", (rc, out, err))
    check(out == "" and one_line(err) and "too_large" in err and
          err.startswith("errrelayctl: "),
          "one line on stderr naming the daemon's code too_large", err)
    rc, out, err = dm.ctl("send", "--fiber", "f" * 129, "too long a fiber")
    check(rc == 1 and out == "" and one_line(err) and "fiber" in err,
          "a fiber id over 128 bytes: exit 1, one line naming the fiber",
          (rc, out, err))

    log("== part 4: the daemon stopped")
    rc = dm.stop()
    check(rc == 0, "SIGTERM: daemon exits 0", rc)
    rc, out, err = dm.ctl("send", "--socket", dm.socket, "nobody listens")
    check(rc == 2, "send with the daemon down exits 2", (rc, out, err))
    check(out == "", "nothing on stdout", out)
    check(one_line(err), "exactly one line on stderr", err)
    check(err.startswith("errrelayctl: cannot connect to %s: " % dm.socket)
          and err.rstrip("\n").endswith("(is errrelayd running?)"),
          "the line names the socket and asks if errrelayd runs", err)
    if not os.path.exists("/run/errrelay.sock"):
        # No --socket and no control socket answering: the default.
        rc, out, err = dm.ctl("send", "nobody listens either")
        check(rc == 2 and out == "" and one_line(err) and
              "cannot connect to " in err and "/errrelay.sock: " in err,
              "without --socket it falls back to the default "
              "(RUNSTATEDIR)/errrelay.sock",
              (rc, out, err))


if __name__ == "__main__":
    run(main, deadline=60)
