# frozen_string_literal: true

# async_tree.rb -- scope inheritance along the Async task tree, in ack mode.
#
# The top task sets tags, a user and a crumb, then spawns three children;
# child 0 spawns a grandchild.  Each child sets its own tag, overrides the
# parent's "shared" tag, adds a crumb and (child 2) its own user, then
# captures an event; the parent sets a "late" tag after spawning (the
# children must not see it: a fork is a copy) and captures after the
# children finished.  Prints one JSON line per event
# {label, event_id} and then {pid, stats}; holds the connection until
# stdin closes.

require "json"
require "errrelay"
require "errrelay/async"

Errrelay.configure(ack: true)
out = []

Async do |top|
  Errrelay.set_tags(parent: "p", shared: "from-parent")
  Errrelay.set_user(id: "parent-user")
  Errrelay.add_breadcrumb(message: "parent crumb")
  children = Array.new(3) do |k|
    top.async do |t|
      Errrelay.set_tag(:child, "c#{k}")
      Errrelay.set_tag(:shared, "child-#{k}")
      Errrelay.add_breadcrumb(message: "child crumb #{k}")
      Errrelay.set_user(id: "child-2-user") if k == 2
      grand = nil
      if k.zero?
        grand = t.async do |g|
          Errrelay.set_tag(:grand, "g")
          Errrelay.add_breadcrumb(message: "grand crumb")
          g.sleep(0.005)
          out << { label: "grandchild", event_id: Errrelay.capture_message("grandchild") }
        end
      end
      t.sleep(0.01 * (3 - k))
      out << { label: "child #{k}", event_id: Errrelay.capture_message("child #{k}") }
      grand&.wait
    end
  end
  Errrelay.set_tag(:late, "x")
  children.each(&:wait)
  out << { label: "parent", event_id: Errrelay.capture_message("parent after children") }
end

out.each { |o| puts JSON.generate(o) }
puts JSON.generate(pid: Process.pid, stats: Errrelay.stats)
$stdout.flush
$stdin.read
