# frozen_string_literal: true

# reconnect_fork.rb -- the client survives a daemon restart and a fork.
#
# Fire-and-forget.  Sets a process-scope tag proc=main and a fiber tag
# who=parent, captures "before restart", flushes, prints {step: 1, pid},
# then waits for a line on stdin (the test restarts the daemon meanwhile).
# Then captures "after restart" (its first write meets the closed
# connection: the client reconnects, replays the process scope, writes
# again), sets who=parent again and forks: the child captures "from
# child" on its own connection (so it sees the process scope, replayed,
# and not the parent's fiber scope), flushes and exits.  Prints
# {step: 2, child_pid, child_status, stats} and waits for stdin to close.

require "json"
require "errrelay"

Errrelay.set_process_scope(tags: { proc: "main" })
Errrelay.set_tags(who: "parent")
ids = { "before restart" => Errrelay.capture_message("before restart") }
puts JSON.generate(step: 1, pid: Process.pid, flushed: Errrelay.flush(timeout: 10),
                   ids: ids)
$stdout.flush
$stdin.gets

ids["after restart"] = Errrelay.capture_message("after restart")
Errrelay.set_tags(who: "parent")
flushed = Errrelay.flush(timeout: 10)
rd, wr = IO.pipe
child = fork do
  rd.close
  id = Errrelay.capture_message("from child")
  ok = Errrelay.flush(timeout: 10)
  wr.puts(JSON.generate(id: id, flushed: ok, stats: Errrelay.stats, pid: Process.pid))
  wr.close
  exit!(0)
end
wr.close
child_said = JSON.parse(rd.read)
_, status = Process.wait2(child)
ids["from child"] = child_said["id"]
puts JSON.generate(step: 2, ids: ids, flushed: flushed, child: child_said,
                   child_status: status.exitstatus, stats: Errrelay.stats)
$stdout.flush
$stdin.read
