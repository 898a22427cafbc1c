# frozen_string_literal: true

# Errrelay::Client -- one connection to errrelayd's data socket.
#
# Writes NDJSON messages (SPEC section 3), each keyed by the scope of the
# current fiber (or thread, with key_by: :thread).  Fire-and-forget by
# default: nothing is read back.  With ack: true the connection says
# hello with ack, and events (and flush) wait for their reply.
#
# One client is shared by every thread and fiber of the process: a Mutex
# serialises whole lines (Ruby's Mutex is fiber-aware under a fiber
# scheduler, so a fiber blocked on a full socket lets the others run).
# The client never raises into the application because of I/O: a failure
# is counted (stats), warned about once, and the message dropped; the next
# message reconnects (at most once per reconnect_interval).  A broken
# connection (EPIPE, ECONNRESET: the daemon restarted, or closed an idle
# connection) is reopened at once and the message written again.  After
# Process.fork the child opens its own connection (the daemon identifies a
# process by the peer pid of the connection) and replays the process scope.

require "json"
require "socket"
require "io/wait"

module Errrelay
  class Client
    DEFAULT_SOCKET = "/run/errrelay.sock"
    KEY_VAR = :__errrelay_scope_key   # fiber-local: Thread#[] is per fiber
    MAX_KEY_BYTES = 128

    OPTIONS = {
      socket: nil,            # nil: ERRRELAY_SOCKET, else DEFAULT_SOCKET
      app: nil,               # nil: ERRRELAY_APP, else the daemon's "default"
      ack: false,             # wait for the daemon's reply to events
      key_by: :fiber,         # :fiber, or :thread (thread-local SDK behaviour)
      ack_timeout: 5.0,       # seconds to wait for a reply
      write_timeout: 5.0,     # seconds a write may block (nil: forever)
      reconnect_interval: 1.0, # seconds between two failed connects
      warn: nil               # callable(String) for the one warning; nil: Kernel#warn
    }.freeze

    IO_ERRORS = [SystemCallError, IOError, SocketError].freeze

    attr_reader :options

    def initialize(**opts)
      @options = OPTIONS.dup
      @seq = 0
      @scope_seq = 0
      @stats = Hash.new(0)
      @warned = false
      @process_scope = {}
      reset_after_fork(force: true)
      configure(**opts)
    end

    # Change options (see OPTIONS); the connection is reopened with them on
    # the next message.  Unknown options raise ArgumentError: that is a
    # programming error, not an I/O one.
    def configure(**opts)
      bad = opts.keys - OPTIONS.keys
      raise ArgumentError, "unknown errrelay option(s): #{bad.join(', ')}" unless bad.empty?

      if opts.key?(:key_by) && !%i[fiber thread].include?(opts[:key_by].to_sym)
        raise ArgumentError, "key_by must be :fiber or :thread"
      end

      synchronize do
        @options.update(opts)
        @options[:key_by] = @options[:key_by].to_sym
        close_locked
        @next_connect = 0.0
      end
      self
    end

    def socket_path
      @options[:socket] || ENV["ERRRELAY_SOCKET"] || DEFAULT_SOCKET
    end

    def app
      @options[:app] || ENV["ERRRELAY_APP"]
    end

    def fiber_keyed?
      @options[:key_by] == :fiber
    end

    # Counters since the client was made (reset in a forked child).
    def stats
      synchronize { @stats.dup }
    end

    # ------------------------------------------------------------ keys

    # The scope key of the caller: the innermost with_scope key, else the
    # current fiber's object_id (unique for the fiber's life, never reused
    # by a later object), or the thread's with key_by: :thread.
    def current_key
      if fiber_keyed?
        Thread.current[KEY_VAR] || Fiber.current.object_id
      else
        Thread.current.object_id
      end
    end

    # Run the block in a new scope forked from the current one; the new
    # scope ends with the block.  Used per request by the Rack middleware,
    # since a keep-alive connection runs many requests in one fiber.
    def with_scope
      return yield unless fiber_keyed?

      parent = current_key
      child = "#{parent}.#{synchronize { @scope_seq += 1 }}"
      return yield if child.bytesize > MAX_KEY_BYTES

      fork_scope(child, parent)
      saved = Thread.current[KEY_VAR]
      Thread.current[KEY_VAR] = child
      begin
        yield
      ensure
        Thread.current[KEY_VAR] = saved
        end_scope(child)
      end
    end

    # ------------------------------------------------------------ messages

    # op set on the caller's scope (fields: tags, extra, contexts, user,
    # level, transaction, fingerprint).  With replace: [:user] the field is
    # cleared first, in the same write.
    def set(fields, replace: [], key: current_key)
      msgs = replace.map { |f| { "op" => "set", "fiber" => key, f.to_s => nil } }
      msgs << { "op" => "set", "fiber" => key }.update(fields)
      write(msgs)
    end

    # op set without fiber: the process scope.  Kept here too, to be
    # replayed on each new connection (a reconnect after the daemon
    # restarted, a forked child).
    def set_process(fields)
      synchronize { merge_process(fields) }
      write([{ "op" => "set" }.update(fields)])
    end

    def crumb(crumb, key: current_key)
      write([{ "op" => "crumb", "fiber" => key, "crumb" => crumb }])
    end

    def fork_scope(child, from)
      write([{ "op" => "fork", "fiber" => child, "from" => from }])
    end

    def end_scope(key = current_key)
      write([{ "op" => "end", "fiber" => key }])
    end

    # op event.  Returns the event_id: fire-and-forget, the one generated
    # here once the line is written; with ack, the daemon's once the event
    # is committed.  nil when it could not be sent or was refused.
    def event(ev, key: current_key)
      msg = { "op" => "event", "fiber" => key, "event" => ev }
      return write([msg]) ? ev["event_id"] : nil unless @options[:ack]

      synchronize do
        id = (@seq += 1)
        msg["id"] = id
        next nil unless write_locked([msg])

        r = await_reply(id)
        if r && r["ok"] == true
          @stats[:acked] += 1
          r["event_id"] || ev["event_id"]
        else
          @stats[:not_acked] += 1 unless r
          nil
        end
      end
    end

    # Wait until the daemon has read and processed every line written so
    # far (it answers a hello with an id in message order).  Returns true
    # or false (timeout, no connection).
    def flush(timeout: @options[:ack_timeout])
      synchronize do
        id = (@seq += 1)
        msgs = [hello(id: id, ack: true)]
        next false unless write_locked(msgs)

        r = await_reply(id, timeout)
        write_locked([hello]) unless @options[:ack]
        !r.nil? && r["ok"] == true
      end
    end

    def close
      synchronize { close_locked }
    end

    # Called in a forked child (Process._fork hook, or the pid check): the
    # parent's connection and lock are not ours.
    def reset_after_fork(force: false)
      return if !force && @pid == Process.pid

      @mutex = Mutex.new
      @pid = Process.pid
      begin
        @sock&.close
      rescue StandardError
        nil
      end
      @sock = nil
      @rbuf = String.new(encoding: Encoding::BINARY)
      @next_connect = 0.0
      @stats = Hash.new(0) unless force
      @stats[:forks] += 1 unless force
    end

    private

    # Run the block holding the lock.  A recursive lock (Errrelay called
    # from a trap handler while this thread writes) or a lock in trap
    # context is a ThreadError: counted, and the block's work dropped.
    def synchronize(&block)
      reset_after_fork if @pid != Process.pid
      @mutex.synchronize(&block)
    rescue ThreadError => e
      @stats[:lock_errors] += 1
      warn_once("errrelay: #{e.message} (message dropped)")
      nil
    end

    def hello(id: nil, ack: @options[:ack])
      h = { "op" => "hello", "ack" => ack, "sdk" => "#{SDK_NAME}/#{VERSION}" }
      h["app"] = app if app
      h["id"] = id if id
      h
    end

    def merge_process(fields)
      fields.each do |k, v|
        if v.nil?
          @process_scope.delete(k)
        elsif v.is_a?(Hash) && %w[tags extra contexts user].include?(k)
          cur = (@process_scope[k] ||= {})
          v.each { |kk, vv| vv.nil? ? cur.delete(kk) : cur[kk] = vv }
        else
          @process_scope[k] = v
        end
      end
    end

    # Encode and write msgs as one write; true if written.  Never raises
    # for I/O or encoding problems.
    def write(msgs)
      synchronize { write_locked(msgs) } || false
    end

    def write_locked(msgs)
      data = encode(msgs)
      return false unless data

      2.times do |attempt|
        drain_replies if @options[:ack] && @sock
        unless connect_locked
          @stats[:dropped] += msgs.size
          return false
        end

        case put(data)
        when :ok
          @stats[:sent] += msgs.size
          return true
        when :timeout
          # The daemon is not reading (its spool cannot keep up): drop
          # this message and, for reconnect_interval, the next ones
          # without waiting.  Lines already written stay in the socket
          # buffer for the daemon to read after we close.
          close_locked
          @next_connect = monotonic + @options[:reconnect_interval].to_f
          fail_io(Errno::ETIMEDOUT.new("write to #{socket_path}"), msgs.size)
          return false
        else # broken: the first time, reconnect and write again
          if attempt.positive?
            fail_io(@last_error, msgs.size)
            return false
          end
          @stats[:reconnects] += 1
          @next_connect = 0.0
        end
      end
      false
    end

    def encode(msgs)
      msgs.map { |m| JSON.generate(m) << "\n" }.join
    rescue StandardError
      begin
        msgs.map { |m| JSON.generate(Event.sanitize(m)) << "\n" }.join
      rescue StandardError => e
        fail_io(e, msgs.size, :encode_errors)
        nil
      end
    end

    # Write all of data.  :ok, :timeout (after write_timeout seconds
    # without progress; the caller closes the connection: a half-written
    # line must not be followed by another) or :broken (connection closed).
    def put(data)
      deadline = @options[:write_timeout] && monotonic + @options[:write_timeout]
      off = 0
      while off < data.bytesize
        n = @sock.write_nonblock(off.zero? ? data : data.byteslice(off..),
                                 exception: false)
        if n == :wait_writable
          left = deadline && deadline - monotonic
          next if (left.nil? || left.positive?) && @sock.wait_writable(left)

          return :timeout
        end
        off += n
      end
      :ok
    rescue *IO_ERRORS => e
      @last_error = e
      close_locked
      :broken
    end

    # Open the connection if needed: hello, then the process scope, in one
    # write.  false if it cannot be opened now.
    def connect_locked
      return true if @sock

      now = monotonic
      return false if now < @next_connect

      begin
        s = UNIXSocket.new(socket_path)
        s.sync = true
        @sock = s
        @rbuf = String.new(encoding: Encoding::BINARY)
        first = [hello]
        first << { "op" => "set" }.update(@process_scope) unless @process_scope.empty?
        data = encode(first)
        if data.nil? || put(data) != :ok
          close_locked
          raise(@last_error || Errno::ETIMEDOUT.new("hello"))
        end
        @stats[:connects] += 1
        true
      rescue *IO_ERRORS => e
        close_locked
        @next_connect = now + @options[:reconnect_interval].to_f
        fail_io(e, 0, :connect_errors)
        false
      end
    end

    def close_locked
      s = @sock
      @sock = nil
      s&.close
    rescue StandardError
      nil
    end

    # Read the reply with this id, counting and skipping others (failure
    # replies of earlier messages, late replies to timed-out waits).  nil
    # on timeout or a closed connection.
    def await_reply(id, timeout = @options[:ack_timeout])
      deadline = monotonic + timeout.to_f
      loop do
        while (line = next_line)
          r = parse_reply(line)
          next unless r
          return r if r["id"] == id
        end
        left = deadline - monotonic
        unless left.positive? && @sock && @sock.wait_readable(left)
          @stats[:ack_timeouts] += 1
          return nil
        end
        return nil unless fill
      end
    rescue *IO_ERRORS => e
      fail_io(e, 0)
      close_locked
      nil
    end

    # Consume replies that are already there without blocking.
    def drain_replies
      while fill(nonblock: true)
        while (line = next_line)
          parse_reply(line)
        end
      end
    rescue *IO_ERRORS
      close_locked
    end

    # Read what is available into @rbuf; false at EOF (connection closed)
    # or, with nonblock, when nothing is there.
    def fill(nonblock: false)
      return false unless @sock

      chunk = @sock.read_nonblock(65_536, exception: false)
      case chunk
      when :wait_readable
        return false if nonblock

        true
      when nil
        close_locked
        false
      else
        @rbuf << chunk
        true
      end
    end

    def next_line
      i = @rbuf.index("\n")
      return nil unless i

      line = @rbuf.slice!(0, i + 1)
      line.force_encoding(Encoding::UTF_8).strip
    end

    def parse_reply(line)
      return nil if line.empty?

      r = JSON.parse(line)
      return nil unless r.is_a?(Hash)

      if r["ok"] == false
        @stats[:rejected] += 1
        warn_once("errrelay: the daemon refused a message: " \
                  "#{r['error']}: #{r['message']}")
      end
      r
    rescue JSON::ParserError
      nil
    end

    def fail_io(err, nmsgs, counter = :io_errors)
      @stats[counter] += 1
      @stats[:dropped] += nmsgs
      warn_once("errrelay: #{socket_path}: #{err.class}: #{err.message} " \
                "(messages are dropped and counted, see Errrelay.stats; " \
                "no further warnings)")
    end

    def warn_once(text)
      return if @warned

      @warned = true
      (@options[:warn] || ->(t) { Kernel.warn(t) }).call(text)
    rescue StandardError
      nil
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end
end
