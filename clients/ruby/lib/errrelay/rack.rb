# frozen_string_literal: true

# errrelay/rack -- Rack middleware: one scope per request, exceptions
# captured and re-raised.
#
#   use Errrelay::Rack                                  # config.ru
#   use Errrelay::Rack, user: ->(env) { {id: env["warden"]&.user&.id} }
#
# For each request, in a fresh scope forked from the fiber's (so requests
# on one keep-alive connection, one fiber, never share a scope, and the
# scope is ended with the request):
#
# - transaction "METHOD /path" (SCRIPT_NAME + PATH_INFO);
# - contexts.request = {method, url (scheme://host/path, no query),
#   query_string} -- the URL goes in a context, not a tag: no headers,
#   cookies or body are sent;
# - the user: env["errrelay.user"] (a Hash, set by an earlier middleware),
#   else the user: proc given here (called with env); both are looked at
#   again when an exception is captured, for apps that authenticate
#   further in;
# - a breadcrumb {category: "http", type: "http", message: "GET /path"};
# - an exception raised by the app is captured (mechanism rack, not
#   handled) and re-raised; its event_id is put in env["errrelay.event_id"].
#   An exception the framework left in env["rack.exception"] or
#   env["sinatra.error"] without raising is captured too.
#
# Does not require rack itself: it reads the env directly.

require_relative "../errrelay"

module Errrelay
  class Rack
    USER_KEY = "errrelay.user"
    EVENT_ID_KEY = "errrelay.event_id"

    def initialize(app, user: nil)
      @app = app
      @user = user
    end

    def call(env)
      Errrelay.with_scope do
        user_set = annotate(env)
        begin
          response = @app.call(env)
        rescue Exception => e # rubocop:disable Lint/RescueException
          # not Interrupt, SystemExit, Async::Stop and the like
          capture(env, e, user_set) if e.is_a?(StandardError) || e.is_a?(ScriptError)
          raise
        end
        left = env["rack.exception"] || env["sinatra.error"]
        capture(env, left, user_set) if left.is_a?(Exception)
        response
      end
    end

    private

    # Scope fields of the request; true if a user was set.
    def annotate(env)
      method = env["REQUEST_METHOD"].to_s
      path = request_path(env)
      Errrelay.set_transaction("#{method} #{path}")
      ctx = { "method" => method, "url" => url(env, path) }
      qs = env["QUERY_STRING"].to_s
      ctx["query_string"] = qs unless qs.empty?
      Errrelay.set_context("request", ctx)
      Errrelay.add_breadcrumb(message: "#{method} #{path}", category: "http",
                              type: "http", level: "info",
                              data: { "method" => method, "url" => ctx["url"] })
      user = find_user(env)
      Errrelay.set_user(user) if user
      !user.nil?
    rescue StandardError
      false
    end

    def capture(env, exc, user_set)
      opts = { mechanism: { "type" => "rack", "handled" => false } }
      unless user_set
        user = find_user(env)
        opts[:user] = user if user
      end
      id = Errrelay.capture_exception(exc, **opts)
      env[EVENT_ID_KEY] = id if id
    rescue StandardError
      nil
    end

    def find_user(env)
      u = env[USER_KEY]
      u = @user.call(env) if u.nil? && @user
      u.is_a?(Hash) && !u.empty? ? u : nil
    rescue StandardError
      nil
    end

    def request_path(env)
      p = "#{env['SCRIPT_NAME']}#{env['PATH_INFO']}"
      p.empty? ? "/" : p
    end

    def url(env, path)
      scheme = env["rack.url_scheme"] || "http"
      host = env["HTTP_HOST"]
      if host.nil? || host.empty?
        host = env["SERVER_NAME"].to_s
        port = env["SERVER_PORT"].to_s
        default = (scheme == "https" ? "443" : "80")
        host = "#{host}:#{port}" unless port.empty? || port == default
      end
      "#{scheme}://#{host}#{path}"
    end
  end
end
