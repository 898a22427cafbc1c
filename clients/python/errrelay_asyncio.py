"""errrelay_asyncio -- an example errrelay client for Python asyncio.

Every message carries the id of the asyncio task it comes from, so the
daemon keeps one scope per task and tasks sharing the loop's thread never
see each other's tags (see docs/PROTOCOL.md).

- A task gets a fiber id the first time it talks: "t1", "t2", ... from one
  counter per process, never reused (id(task) may be, once a task is gone).
  Code outside any task uses the process scope.
- relay.create_task(coro): the child's scope starts as a copy of its
  parent's ("fork" from the parent's id, sent before the child can run);
  "end" is sent when it finishes.  A task made by plain asyncio.create_task
  starts with an empty scope (never a shared one) and is ended too.
- ack=False (default): fire and forget, nothing is read.  ack=True: every
  call waits for its reply and raises ErrRelayError if the daemon refused;
  capture_* then return once the event is on the daemon's disk.
"""

import asyncio
import collections
import itertools
import json
import os
import sys
import traceback
import uuid
import weakref

_fiber_ids = itertools.count(1)     # per process: scopes are keyed (pid, fiber)


class ErrRelayError(Exception):
    """The daemon answered ok:false; .code is its error code."""

    def __init__(self, reply):
        super().__init__("%s: %s" % (reply.get("error"), reply.get("message")))
        self.code = reply.get("error")


def _warn_unless_ok(fut):
    err = None if fut.cancelled() else fut.exception()
    if err is not None or not (fut.cancelled() or fut.result().get("ok")):
        print("errrelay: %s" % (err or fut.result()), file=sys.stderr)


class ErrRelay:
    def __init__(self, path=None, app="default", ack=False):
        self.path = path or os.environ.get("ERRRELAY_SOCKET", "/run/errrelay.sock")
        self.app, self.ack = app, ack
        self._reader = self._writer = self._read_task = None
        self._msg_ids = itertools.count(1)
        self._fibers = weakref.WeakKeyDictionary()      # task -> fiber id
        self._waiting = collections.deque()             # ack: futures, in order

    async def connect(self):
        self._reader, self._writer = await asyncio.open_unix_connection(self.path)
        if self.ack:
            self._read_task = asyncio.get_running_loop().create_task(self._read_replies())
        await self._send({"op": "hello", "app": self.app, "ack": self.ack,
                          "sdk": "errrelay-asyncio/0.1"})

    async def close(self):
        """Wait for the replies still due (ack mode), then close."""
        await asyncio.gather(*self._waiting, return_exceptions=True)
        self._writer.close()
        await self._writer.wait_closed()
        if self._read_task is not None:
            await self._read_task

    async def _read_replies(self):
        # Every message has an id, so one reply per message, in message order.
        while line := await self._reader.readline():
            if self._waiting and not (fut := self._waiting.popleft()).done():
                fut.set_result(json.loads(line))
        while self._waiting:
            if not (fut := self._waiting.popleft()).done():
                fut.set_exception(ConnectionError("errrelayd closed the connection"))

    def _write(self, msg, awaited=True):
        """Queue one line now: no await, so lines go in the order of the calls."""
        fut = None
        if self.ack:
            msg["id"] = next(self._msg_ids)
            fut = asyncio.get_running_loop().create_future()
            if not awaited:                     # fork/end: nobody waits, so warn
                fut.add_done_callback(_warn_unless_ok)
            self._waiting.append(fut)
        self._writer.write(json.dumps(msg, default=str).encode() + b"\n")
        return fut

    async def _send(self, msg):
        fut = self._write(msg)
        try:
            await self._writer.drain()          # the daemon may pause reading
        except ConnectionError:
            if fut is None:
                return None                     # lose the report, not the app
            raise
        if fut is None:
            return None
        reply = await fut
        if not reply.get("ok"):
            raise ErrRelayError(reply)
        return reply

    # ------------------------------------------------------------ task keys
    def _fiber(self):
        """The current task's fiber id (made on first use), or None."""
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return None
        if task is not None and task not in self._fibers:
            self._fibers[task] = "t%d" % next(_fiber_ids)
            task.add_done_callback(self._task_done)
        return self._fibers.get(task) if task is not None else None

    def _task_done(self, task):
        fiber = self._fibers.pop(task, None)
        if fiber is not None and not self._writer.is_closing():
            self._write({"op": "end", "fiber": fiber}, awaited=False)

    def create_task(self, coro, *, name=None):
        """asyncio.create_task, the new task inheriting the current one's scope."""
        parent, child = self._fiber(), "t%d" % next(_fiber_ids)
        if parent is not None:
            self._write({"op": "fork", "fiber": child, "from": parent}, awaited=False)
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._fibers[task] = child
        task.add_done_callback(self._task_done)
        return task

    async def _op(self, op, process=False, **fields):
        fiber = None if process else self._fiber()
        msg = dict({"op": op}, **fields, **({"fiber": fiber} if fiber else {}))
        return await self._send(msg)

    # ------------------------------------------------------------ the scope
    async def set_tags(self, tags, process=False):
        """Merge tags into the task's scope (process=True: every task's)."""
        await self._op("set", process, tags=tags)

    async def set_user(self, user, process=False):
        await self._op("set", process, user=user)

    async def add_breadcrumb(self, message, category=None, level=None, data=None):
        crumb = {"message": message, "category": category, "level": level, "data": data}
        await self._op("crumb", crumb={k: v for k, v in crumb.items() if v is not None})

    # --------------------------------------------------------------- events
    async def capture_event(self, event):
        """Send a Sentry event; returns its event_id (made here, known at once)."""
        event = dict(event, event_id=event.get("event_id") or uuid.uuid4().hex)
        reply = await self._op("event", event=event)
        return reply["event_id"] if reply else event["event_id"]

    async def capture_message(self, message, level="info", **event):
        return await self.capture_event(dict(event, message=message, level=level))

    async def capture_exception(self, exc=None, **event):
        exc = exc if exc is not None else sys.exc_info()[1]
        frames = [{"filename": f.filename, "function": f.name, "lineno": f.lineno,
                   "context_line": f.line} for f in traceback.extract_tb(exc.__traceback__)]
        value = {"type": type(exc).__name__, "value": str(exc),
                 "module": type(exc).__module__, "stacktrace": {"frames": frames}}
        return await self.capture_event(dict(event, level="error", platform="python",
                                             exception={"values": [value]}))


if __name__ == "__main__":
    async def handle(relay, n):
        await relay.set_tags({"request": "r%d" % n})
        await relay.set_user({"id": "user-%d" % n})
        await relay.add_breadcrumb("request %d started" % n, category="http")

        async def charge():                     # starts with request, user, crumb
            await relay.set_tags({"step": "charge"})
            try:
                {}["sku-%d" % n]
            except KeyError:
                print("charge of %d:" % n, await relay.capture_exception())
        await relay.create_task(charge())
        print("request %d:" % n, await relay.capture_message("request %d done" % n))

    async def demo(path):
        relay = ErrRelay(path, app="demo", ack=True)
        await relay.connect()
        await relay.set_tags({"pid": str(os.getpid())}, process=True)
        await asyncio.gather(*(relay.create_task(handle(relay, n)) for n in range(3)))
        await relay.close()

    asyncio.run(demo(sys.argv[1] if len(sys.argv) > 1 else None))
