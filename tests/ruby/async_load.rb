# frozen_string_literal: true

# async_load.rb -- the original bug: N concurrent Async tasks on ONE thread,
# each setting its own user, tags and a breadcrumb, yielding, then raising
# and capturing an error whose message names the task ("boom I").
#
#   ruby -I clients/ruby/lib tests/ruby/async_load.rb MODE N SEED
#
# MODE fiber (the errrelay way) or thread (key_by: :thread, as a
# thread-local SDK: the negative control).  The data socket comes from
# ERRRELAY_SOCKET.  When every event is written it flushes, prints one JSON
# line {pid, raise_line, flushed, stats, threads} and keeps its connection
# open until stdin closes, so the test can look at its live scopes.

require "json"
require "errrelay"
require "errrelay/async"

mode, n, seed = ARGV[0], Integer(ARGV[1]), Integer(ARGV[2])
Errrelay.configure(key_by: mode.to_sym)
rng = Random.new(seed)
delays = Array.new(n) { rng.rand * 0.01 }
threads = {}
raise_line = nil

Async do |top|
  tasks = Array.new(n) do |i|
    top.async do |task|
      threads[Thread.current.object_id] = true
      Errrelay.set_user(id: "u#{i}")
      Errrelay.set_tags(task: i.to_s, req: "r#{i}")
      Errrelay.add_breadcrumb(message: "crumb #{i}", category: "load")
      task.sleep(delays[i])
      begin
        raise_line = __LINE__ + 1
        raise "boom #{i}"
      rescue RuntimeError => e
        Errrelay.capture_exception(e)
      end
    end
  end
  tasks.each(&:wait)
end

flushed = Errrelay.flush(timeout: 15)
puts JSON.generate(pid: Process.pid, raise_line: raise_line, flushed: flushed,
                   stats: Errrelay.stats, threads: threads.size)
$stdout.flush
$stdin.read
