# frozen_string_literal: true

# Errrelay::Event -- turns Ruby values into what the wire protocol accepts.
#
# Pure functions, no I/O: a Sentry event from an exception (exception.values
# with stack frames oldest first, causes before the exception they caused),
# a breadcrumb, and `sanitize`, which makes any Ruby value JSON-safe (UTF-8
# strings, finite numbers, bounded depth) so that encoding a message can
# never raise into the application.

require "rbconfig"
require "securerandom"

module Errrelay
  module Event
    MAX_DEPTH = 16        # deeper structures are cut (the daemon allows 64)
    MAX_CAUSES = 5        # exception.cause chain length kept
    MAX_FRAMES = 250      # frames per exception (the newest are kept)
    LEVELS = {
      "fatal" => "fatal", "error" => "error", "warning" => "warning",
      "warn" => "warning", "info" => "info", "debug" => "debug",
      "log" => "info"
    }.freeze

    # Keyword arguments of capture_* that name event fields; any other
    # keyword goes into the event's extra.
    EVENT_KEYS = %i[tags extra user contexts level fingerprint transaction
                    mechanism].freeze

    module_function

    # A new event id: 32 lowercase hex digits (uuid4 without dashes).
    def new_id
      SecureRandom.uuid.delete("-")
    end

    # "warning" for :warn, "error" for "ERROR", ...; nil for nil; an
    # unknown level is passed on as its lowercase text.
    def level(value)
      return nil if value.nil?

      s = utf8(value.to_s).downcase
      LEVELS.fetch(s, s)
    end

    # A string in valid UTF-8 (invalid bytes replaced).
    def utf8(str)
      s = str.to_s
      s = s.dup.force_encoding(Encoding::UTF_8) unless s.encoding == Encoding::UTF_8
      s.valid_encoding? ? s : s.scrub("\uFFFD")
    rescue StandardError
      "?"
    end

    # Any Ruby value as plain JSON data: Hash keys become strings, Symbols
    # strings, non-finite floats and unknown objects their text; structures
    # deeper than MAX_DEPTH and cycles are cut.  Never raises.
    def sanitize(value, depth = 0, seen = nil)
      case value
      when nil, true, false, Integer
        value
      when Float
        value.finite? ? value : value.to_s
      when String
        utf8(value)
      when Symbol
        utf8(value.to_s)
      when Hash, Array
        return "[depth limit]" if depth >= MAX_DEPTH

        seen ||= {}
        return "[cycle]" if seen.key?(value.object_id)

        seen[value.object_id] = true
        out = if value.is_a?(Hash)
                value.each_with_object({}) do |(k, v), h|
                  h[utf8(k.to_s)] = sanitize(v, depth + 1, seen)
                end
              else
                value.map { |v| sanitize(v, depth + 1, seen) }
              end
        seen.delete(value.object_id)
        out
      when Numeric
        value.respond_to?(:to_f) && value.to_f.finite? ? value.to_f : value.to_s
      else
        utf8(value.respond_to?(:to_str) ? value.to_str : value.to_s)
      end
    rescue StandardError
      "[unserialisable]"
    end

    # Tag values must be scalars (an object or array is bad_field for the
    # whole message): strings, numbers and booleans are kept, nil removes
    # the tag, anything else becomes its text.
    def tags(hash)
      return nil if hash.nil?

      hash.each_with_object({}) do |(k, v), h|
        h[utf8(k.to_s)] = case v
                          when nil, true, false, Integer then v
                          when Float then v.finite? ? v : v.to_s
                          else utf8(v.to_s)
                          end
      end
    end

    # One Sentry stack frame per backtrace entry, oldest first (Ruby's
    # backtrace is newest first).  Uses backtrace_locations when the
    # exception has them, else parses "path:line:in `label'" text.
    def frames(exc)
      locs = exc.backtrace_locations
      list = if locs && !locs.empty?
               locs.map do |l|
                 frame(l.path || l.absolute_path || "?", l.lineno,
                       l.label, l.absolute_path)
               end
             else
               (exc.backtrace || []).map { |line| parse_line(line) }
             end
      list = list.first(MAX_FRAMES)
      list.reverse
    rescue StandardError
      []
    end

    BACKTRACE_RE = /\A(.+?):(\d+)(?::in [`'](.*)')?\z/.freeze

    def parse_line(line)
      m = BACKTRACE_RE.match(utf8(line))
      return frame(utf8(line), nil, nil, nil) unless m

      frame(m[1], m[2].to_i, m[3], nil)
    end

    def frame(path, lineno, label, abs)
      path = utf8(path)
      f = { "filename" => path, "abs_path" => utf8(abs || File.expand_path(path)) }
      f["lineno"] = lineno if lineno
      f["function"] = utf8(label) if label
      f["in_app"] = in_app?(f["abs_path"])
      f
    end

    # Frames of Ruby itself, of installed gems and of this client are not
    # the app's.
    def in_app?(path)
      @lib_dirs ||= begin
        dirs = [RbConfig::CONFIG["rubylibprefix"], RbConfig::CONFIG["rubylibdir"],
                "/usr/lib/ruby", "/usr/share/rubygems-integration",
                "/var/lib/gems", "<internal:",
                File.join(File.expand_path("..", __dir__), "errrelay")]
        dirs << Gem.dir if defined?(Gem) && Gem.respond_to?(:dir)
        dirs.compact.uniq
      end
      @lib_dirs.none? { |d| path.start_with?(d) }
    rescue StandardError
      true
    end

    # The exception interface: the cause chain oldest first, the captured
    # exception last (Sentry's order), each with type, value, module and
    # stacktrace.
    def exception_values(exc, mechanism = nil)
      chain = []
      e = exc
      while e && chain.size < MAX_CAUSES && !chain.any? { |c| c.equal?(e) }
        chain << e
        e = e.respond_to?(:cause) ? e.cause : nil
      end
      values = chain.map do |x|
        name = utf8(x.class.name || x.class.to_s)
        parts = name.split("::")
        v = { "type" => parts.last, "value" => message_of(x),
              "stacktrace" => { "frames" => frames(x) } }
        v["module"] = parts[0..-2].join("::") if parts.size > 1
        v
      end
      values.first["mechanism"] = sanitize(mechanism) if mechanism && !values.empty?
      values.reverse
    end

    def message_of(exc)
      utf8(exc.message)
    rescue StandardError
      utf8(exc.class.name)
    end

    # The event for capture_exception / capture_message: the payload plus
    # the event-field keywords, other keywords as extra.
    def build(payload, opts)
      ev = { "event_id" => new_id, "timestamp" => Time.now.to_f,
             "platform" => "ruby",
             "sdk" => { "name" => SDK_NAME, "version" => VERSION } }
      ev.update(payload)
      extra = {}
      opts.each do |k, v|
        case k.to_sym
        when :tags then ev["tags"] = tags(v) if v
        when :level then ev["level"] = level(v) if v
        when :extra then extra.update(v.to_h) if v
        when :mechanism then nil
        else
          if EVENT_KEYS.include?(k.to_sym)
            ev[k.to_s] = sanitize(v) unless v.nil?
          else
            extra[k] = v
          end
        end
      end
      ev["extra"] = sanitize(extra) unless extra.empty?
      ev
    end

    def from_exception(exc, opts)
      build({ "exception" => { "values" =>
                               exception_values(exc, opts[:mechanism]) } },
            opts)
    end

    def from_message(msg, opts)
      build({ "message" => utf8(msg.to_s) }, opts)
    end

    # A breadcrumb object; the timestamp is the client's clock (the daemon
    # would fill the receipt time otherwise).
    def crumb(message: nil, category: nil, level: nil, type: nil, data: nil,
              timestamp: nil)
      c = { "timestamp" => (timestamp || Time.now).to_f }
      c["message"] = utf8(message.to_s) unless message.nil?
      c["category"] = utf8(category.to_s) unless category.nil?
      c["level"] = level(level) unless level.nil?
      c["type"] = utf8(type.to_s) unless type.nil?
      c["data"] = sanitize(data.to_h) unless data.nil?
      c
    end
  end
end
