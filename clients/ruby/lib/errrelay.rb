# frozen_string_literal: true

# errrelay -- the Ruby client of errrelayd, for fiber servers.
#
# A Sentry-like API whose scope lives in the daemon, not in the process:
# every call becomes one NDJSON message on the data socket, keyed by the
# current fiber, so concurrent requests on one thread never see each
# other's tags, user or breadcrumbs.  The process holds no mutable scope
# state of its own (only a copy of the process scope, replayed when it
# reconnects).
#
#   require "errrelay"
#   Errrelay.configure(socket: "/run/errrelay.sock", app: "shop")
#   Errrelay.set_user(id: 42)
#   Errrelay.set_tags(order: "o-7")
#   Errrelay.add_breadcrumb(message: "cart loaded", category: "shop")
#   begin ... rescue => e; Errrelay.capture_exception(e); end
#
# require "errrelay/async" forks a child task's scope from its parent's and
# ends it with the task; require "errrelay/rack" gives Errrelay::Rack.
# Nothing here raises into the application because of I/O.

require "rbconfig"
require_relative "errrelay/version"
require_relative "errrelay/event"
require_relative "errrelay/client"

module Errrelay
  @client = nil
  @client_lock = Mutex.new

  class << self
    # The process's client (made on first use).
    def client
      @client || @client_lock.synchronize { @client ||= Client.new }
    end

    # Errrelay.configure(socket:, app:, ack:, key_by:, ack_timeout:,
    # write_timeout:, reconnect_interval:, warn:) -- see Client::OPTIONS.
    # key_by: :thread keys messages by Thread.current, as thread-local SDKs
    # do: under fibers that mixes requests (it exists to show the bug).
    def configure(**opts)
      client.configure(**opts)
    end

    # -------------------------------------------------- the fiber's scope

    # Merge tags (values: strings, numbers, booleans; nil removes a tag).
    def set_tags(hash)
      client.set({ "tags" => Event.tags(hash.to_h) })
    end

    def set_tag(key, value)
      set_tags(key => value)
    end

    # Replace the user (nil or {} clears it), as Sentry's set_user does.
    def set_user(hash)
      user = hash.nil? || hash.empty? ? nil : Event.sanitize(hash.to_h)
      return client.set({ "user" => nil }) if user.nil?

      client.set({ "user" => user }, replace: ["user"])
    end

    # Merge extra data (nil removes a key).
    def set_extras(hash)
      client.set({ "extra" => Event.sanitize(hash.to_h) })
    end

    def set_extra(key, value)
      set_extras(key => value)
    end

    # Set one context (e.g. "os", "runtime", "request") whole; nil removes it.
    def set_context(name, hash)
      client.set({ "contexts" => { Event.utf8(name.to_s) => Event.sanitize(hash&.to_h) } })
    end

    # "fatal", "error", "warning", "info", "debug" (symbols too); nil unsets.
    def set_level(level)
      client.set({ "level" => Event.level(level) })
    end

    def set_transaction(name)
      client.set({ "transaction" => name.nil? ? nil : Event.utf8(name.to_s) })
    end

    # Array of strings; nil unsets.
    def set_fingerprint(list)
      client.set({ "fingerprint" => list&.map { |x| Event.utf8(x.to_s) } })
    end

    # Append a breadcrumb (message may also be given positionally).
    def add_breadcrumb(msg = nil, message: msg, category: nil, level: nil,
                       type: nil, data: nil, timestamp: nil)
      client.crumb(Event.crumb(message: message, category: category,
                               level: level, type: type, data: data,
                               timestamp: timestamp))
    end

    # The process scope (op set without fiber: every fiber of the process
    # sees it below its own): any of tags:, extra:, contexts:, user:,
    # level:, transaction:, fingerprint:.  Replayed after a reconnect.
    def set_process_scope(tags: nil, extra: nil, contexts: nil, user: nil,
                          level: nil, transaction: nil, fingerprint: nil)
      f = {}
      f["tags"] = Event.tags(tags.to_h) if tags
      f["extra"] = Event.sanitize(extra.to_h) if extra
      f["contexts"] = Event.sanitize(contexts.to_h) if contexts
      f["user"] = Event.sanitize(user.to_h) if user
      f["level"] = Event.level(level) if level
      f["transaction"] = Event.utf8(transaction.to_s) if transaction
      f["fingerprint"] = Event.sanitize(Array(fingerprint)) if fingerprint
      client.set_process(f)
    end

    # ---------------------------------------------------------- events

    # Capture an exception: a Sentry event whose exception.values hold the
    # cause chain and the exception (last), each with type, value and
    # stacktrace frames (filename, lineno, function), oldest frame first.
    # Keywords tags:, extra:, user:, contexts:, level:, fingerprint:,
    # transaction: set those event fields (they win over every scope);
    # any other keyword goes into extra.  Returns the event_id, or nil if
    # it was not sent (or, with ack, not acknowledged).
    def capture_exception(exc, **opts)
      return nil unless exc.is_a?(Exception)

      client.event(Event.from_exception(exc, opts))
    rescue StandardError => e
      internal_error(e)
    end

    # Capture a message; level: nil leaves the scope's level (default
    # "error" at the daemon).  Same keywords and return as capture_exception.
    def capture_message(message, level: nil, **opts)
      client.event(Event.from_message(message, opts.merge(level: level)))
    rescue StandardError => e
      internal_error(e)
    end

    # ---------------------------------------------------- scope control

    # The key of the caller's scope (a fiber's object_id, or a with_scope
    # key).  Pass it to inherit in a fiber or thread you start yourself.
    def scope_key
      client.current_key
    end

    # Make the caller's scope a copy of the scope named by from_key
    # (op fork).  errrelay/async does this for every Async task.
    def inherit(from_key)
      client.fork_scope(client.current_key, from_key)
    end

    # The caller's fiber is done: free its scope (op end).
    def end_scope
      client.end_scope
    end

    # Run the block in a fresh scope forked from the current one, ended
    # after it (one per request: a keep-alive connection runs many requests
    # in one fiber).
    def with_scope(&block)
      client.with_scope(&block)
    end

    # Wait until the daemon has processed everything written so far; true
    # if it answered within timeout seconds.
    def flush(timeout: 5)
      client.flush(timeout: timeout)
    end

    # Counters: sent, dropped, io_errors, connect_errors, reconnects,
    # connects, acked, not_acked, rejected, ack_timeouts, forks,
    # encode_errors, lock_errors, internal_errors.
    def stats
      client.stats
    end

    def close
      @client&.close
    end

    # The client after Process.fork in the child (Process._fork hook).
    def after_fork_in_child
      @client_lock = Mutex.new
      @client&.reset_after_fork
    end

    private

    def internal_error(err)
      client.send(:fail_io, err, 1, :internal_errors)
      nil
    rescue StandardError
      nil
    end
  end

  # Ruby >= 3.1 calls Process._fork for every fork (Kernel#fork,
  # Process.fork, IO.popen("-")...): reset the client in the child before
  # any other code runs there.  Older rubies rely on the pid check.
  module ForkHook
    def _fork
      pid = super
      Errrelay.after_fork_in_child if pid.zero?
      pid
    end
  end
  Process.singleton_class.prepend(ForkHook) if Process.respond_to?(:_fork)
end
