# frozen_string_literal: true

# errrelay/async -- scope inheritance for Async tasks (async 1.x).
#
# Prepends Errrelay::AsyncTask to Async::Task:
#
# - Task#initialize runs in the fiber that spawns the task (task.async,
#   Async {}, Barrier#async, Fiber.schedule): it records that fiber's scope
#   key, including a with_scope key, as the task's parent scope.  For
#   `task.async` this is the parent task's fiber (Task.new defaults its
#   parent node to Task.current?); for a top-level Async {} it is the
#   caller's fiber, whose own scope the task then starts from (the node
#   parent there is the reactor, which has no scope).
# - Task#set! is the first thing the task's new fiber does, before its
#   block: there the child's scope is forked from the parent's (op fork,
#   fiber = the child's fiber, from = the parent's key).  The parent's
#   earlier messages went down the same connection first, so the copy is
#   of the parent's scope as it was when the child started; later changes
#   on either side stay on that side.
# - Task#finish! runs in the task's fiber when its block is done (complete,
#   failed or stopped): the task's scope is ended (op end).
#
# Only with key_by: :fiber (the default); with key_by: :thread nothing is
# sent, as a thread-local SDK would not.

require "async"
require_relative "../errrelay"

module Errrelay
  module AsyncTask
    def initialize(*args, **options, &block)
      client = Errrelay.client
      @errrelay_parent_key = client.current_key if client.fiber_keyed?
      super
    end

    private

    def set!
      super
      client = Errrelay.client
      return unless client.fiber_keyed?

      @errrelay_key = client.current_key
      client.fork_scope(@errrelay_key, @errrelay_parent_key) unless @errrelay_parent_key.nil?
    end

    def finish!
      client = Errrelay.client
      client.end_scope(@errrelay_key) if @errrelay_key && client.fiber_keyed?
      super
    end
  end

  hooks = %i[set! finish!].all? { |m| ::Async::Task.private_method_defined?(m) }
  if hooks
    ::Async::Task.prepend(AsyncTask)
  else
    Kernel.warn("errrelay/async: this async (#{::Async::VERSION}) has no " \
                "Task#set!/#finish!: child tasks will not inherit scopes")
  end
end
