# frozen_string_literal: true

# rack_mock.rb -- Errrelay::Rack around an app that raises, called with
# Rack::MockRequest (no server), in ack mode, on one fiber.
#
# Request 1: GET /orders/7?expand=items with env["errrelay.user"]; the app
# raises Shop::OrderError "order 7 is on fire".  Request 2, on the same
# fiber (as on a keep-alive connection): GET /health, no user, raises
# RuntimeError "health down": it must carry nothing of request 1.
# Request 3: the user comes from the middleware's proc; the app captures
# a message itself and returns 200.  Prints one JSON line per request, then {pid, stats};
# holds the connection until stdin closes.

require "json"
require "rack"
require "rack/mock"
require "errrelay"
require "errrelay/rack"

module Shop
  class OrderError < StandardError; end
end

Errrelay.configure(ack: true)
seen_env = nil
app = lambda do |env|
  seen_env = env
  case env["PATH_INFO"]
  when "/orders/7" then raise Shop::OrderError, "order 7 is on fire"
  when "/health" then raise "health down"
  else
    env["errrelay.event_id"] = Errrelay.capture_message("ok path note", level: :info)
    [200, { "Content-Type" => "text/plain" }, ["ok"]]
  end
end
mw = Errrelay::Rack.new(app, user: ->(env) { env["HTTP_X_USER"] && { "id" => env["HTTP_X_USER"] } })
mock = Rack::MockRequest.new(mw)

def request(mock, label, path, env, seen)
  res = { label: label }
  begin
    r = mock.get(path, env)
    res[:status] = r.status
  rescue StandardError => e
    res[:reraised] = e.class.name
    res[:reraised_message] = e.message
  end
  res[:event_id] = seen.call&.fetch("errrelay.event_id", nil)
  res
end

getter = -> { seen_env }
out = []
out << request(mock, "order", "/orders/7?expand=items",
               { "errrelay.user" => { "id" => "u-7", "email" => "seven@example.org" } }, getter)
seen_env = nil
out << request(mock, "health", "/health", {}, getter)
seen_env = nil
out << request(mock, "ok", "/ok", { "HTTP_X_USER" => "u-proc" }, getter)
Errrelay.flush(timeout: 10)
out.each { |o| puts JSON.generate(o) }
puts JSON.generate(pid: Process.pid, stats: Errrelay.stats)
$stdout.flush
$stdin.read
