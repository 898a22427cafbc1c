"""test_reload.py -- SIGHUP reloads the config (SPEC §5, issue 4 "Signals").

Proves, against one daemon that is never restarted unless said:
1. an invalid config on SIGHUP is refused with the reason in the log and
   the old one stays in force (same routes, still delivering);
2. [scope] values apply to the next event;
3. a route added by SIGHUP receives its app's events at once;
4. a route whose upstream changed starts afresh: the events it held in
   backoff for a dead upstream go to the new one right away (no backoff
   wait, no window carried over), each exactly once;
5. a removed route keeps its spooled events: status lists it as
   "unconfigured" with its pending count and the health is degraded (exit
   1); new events of that app go to the default route; a restart keeps
   the rows; configuring the route again delivers them;
6. keys that only a restart can apply (socket) are named in a warning and
   the daemon keeps serving the socket it has.
"""

import os
import signal

from harness import (Client, Daemon, check, read_ndjson, run, wait_until)
from stub_upstream import Stub


def route(st, name):
    for r in st.get("routes", []):
        if r.get("name") == name:
            return r
    return None


def hup(d, sections, what):
    """Rewrite the config and SIGHUP; wait for the log to say it was read."""
    before = d.log_text().count("SIGHUP: config")
    d.configure(sections)
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: d.log_text().count("SIGHUP: config") > before, 10,
               "the daemon to log the SIGHUP (%s)" % what)


def shop_to(base, stub):
    """base with [route shop] sending over http to stub."""
    cfg = dict(base)
    cfg["route shop"] = {"type": "http", "batch_size": 100,
                         "url": "http://127.0.0.1:%d/in" % stub.port}
    return cfg


def wait_shop_backoff(d, what):
    wait_until(lambda: (route(d.status(), "shop") or {}).get("state") ==
               "backoff", 15, what)


def messages(path):
    return [e.get("message") for e in read_ndjson(path)]


def main():
    good = Stub(status=200)
    down = Stub(status=503)
    d = Daemon()
    outbox = os.path.join(d.dir, "default.ndjson")
    shopbox = os.path.join(d.dir, "shop.ndjson")
    base = {"upstream": {"type": "file", "path": outbox},
            "scope": {"environment": "before"}}
    d.configure(base)
    d.start()

    c = Client(d.socket, "default-app")
    c.hello()
    c.send_events(1, "first")
    wait_until(lambda: messages(outbox) == ["first event 0"], 10,
               "the first event in the default outbox")

    # 1. an invalid config is refused, the old one kept
    bad = {"upstream": {"type": "file", "path": outbox},
           "daemon": {"max_fibers": "lots"}}
    hup(d, bad, "invalid config")
    wait_until(lambda: "config not reloaded" in d.log_text() and
               "max_fibers" in d.log_text(), 10,
               "the log to refuse the config, naming the bad key")
    check(d.running(), "the daemon still runs after a bad SIGHUP")
    c.send_events(1, "after-bad")
    wait_until(lambda: "after-bad event 0" in messages(outbox), 10,
               "delivery to the old route after a refused reload")
    ev = [e for e in read_ndjson(outbox) if e["message"] == "after-bad event 0"]
    check(ev[0].get("environment") == "before",
          "the old [scope] still applies", ev[0].get("environment"))

    # 2 + 3. [scope] applies live; a new route gets its app's events
    cfg2 = {"upstream": {"type": "file", "path": outbox},
            "scope": {"environment": "after"},
            "route shop": {"type": "file", "path": shopbox}}
    hup(d, cfg2, "route shop added")
    check("config reloaded" in d.log_text(), "the reload is logged")
    st = d.status()
    check(route(st, "shop") is not None and
          route(st, "shop").get("state") == "ok",
          "status lists the new route shop, state ok", route(st, "shop"))
    shop = Client(d.socket, "shop-app")
    shop.hello(app="shop")
    shop.send_events(3, "shop")
    wait_until(lambda: len(messages(shopbox)) == 3, 10,
               "3 shop events in the new route's outbox")
    check(sorted(messages(shopbox)) ==
          ["shop event 0", "shop event 1", "shop event 2"],
          "the new route got exactly its app's events", messages(shopbox))
    check(not any(m.startswith("shop") for m in messages(outbox)),
          "no shop event went to the default route")
    env = [e.get("environment") for e in read_ndjson(shopbox)]
    check(env == ["after"] * 3, "the new [scope] environment applies", env)

    # 4. changing an upstream: held events go to the new one at once
    to_down = shop_to(cfg2, down)
    hup(d, to_down, "shop to a failing upstream")
    shop.send_events(5, "held")
    wait_shop_backoff(d, "route shop in backoff on 503")
    check(down.count(503) >= 1, "the failing upstream answered 503",
          down.summary())
    cfg4 = shop_to(cfg2, good)
    hup(d, cfg4, "shop to a working upstream")
    r = route(d.status(), "shop")
    check(r.get("state") == "ok" and r.get("retry_in_s") == 0,
          "a changed upstream starts with no backoff", r)
    wait_until(lambda: len(good.http_events()) >= 5, 10,
               "the 5 held events at the new upstream")
    wait_until(lambda: (route(d.status(), "shop") or {}).get("pending") == 0,
               10, "route shop's pending to reach 0")
    got = sorted(e["message"] for e in good.http_events())
    check(got == ["held event %d" % i for i in range(5)],
          "each held event reached the new upstream exactly once", got)

    # 5. removing a route keeps its rows
    hup(d, to_down, "shop to the failing upstream again")
    shop.send_events(4, "orphan")
    wait_shop_backoff(d, "route shop in backoff again")
    hup(d, {"upstream": {"type": "file", "path": outbox},
            "scope": {"environment": "after"}}, "route shop removed")
    rc, st = d.status(with_rc=True)
    r = route(st, "shop")
    check(r is not None and r.get("state") == "unconfigured" and
          r.get("pending") == 4,
          "the removed route is listed unconfigured with its 4 events", r)
    check(rc == 1 and st.get("health") == "degraded",
          "unconfigured rows make the health degraded (exit 1)",
          (rc, st.get("health")))
    check("no [route shop]" in d.log_text(),
          "the log says the rows have no configured route")
    shop.send_events(1, "to-default")
    wait_until(lambda: "to-default event 0" in messages(outbox), 10,
               "the shop app's new event in the default outbox")
    n503 = down.count()
    d.stop()
    d.start()
    r = route(d.status(), "shop")
    check(r is not None and r.get("state") == "unconfigured" and
          r.get("pending") == 4, "after a restart the 4 rows are kept", r)
    check(down.count() == n503,
          "nothing was sent to the removed route's old upstream",
          (n503, down.count()))
    # configured again: delivered
    hup(d, cfg4, "route shop back")
    wait_until(lambda: sum(1 for e in good.http_events()
                           if e["message"].startswith("orphan")) == 4, 10,
               "the 4 kept events delivered once shop is configured again")
    rc, st = d.status(with_rc=True)
    check(rc == 0 and route(st, "shop")["pending"] == 0,
          "healthy again with nothing pending", (rc, route(st, "shop")))

    # 6. a restart-only key
    moved = dict(cfg4)
    moved["daemon"] = {"socket": os.path.join(d.dir, "other.sock")}
    old_socket = d.socket
    hup(d, moved, "socket changed")
    check("socket changed; it takes effect on restart" in d.log_text(),
          "a changed socket is named as taking effect on restart")
    check(d.status().get("socket") == old_socket,
          "status still shows the socket in use", d.status().get("socket"))
    c2 = Client(old_socket, "after-socket-change")
    c2.hello()
    c2.send_events(1, "still")
    wait_until(lambda: "still event 0" in messages(outbox), 10,
               "delivery through the old socket")
    for cl in (c, shop, c2):
        cl.close()
    check(d.stop() == 0, "SIGTERM exits 0")
    # the config file now names other.sock; keep the harness in step
    d.socket = old_socket


run(main, deadline=90)
