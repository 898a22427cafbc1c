# frozen_string_literal: true

module Errrelay
  VERSION = "0.1.0"
  # The wire protocol version this client speaks (SPEC section 3).
  PROTOCOL = 1
  SDK_NAME = "errrelay-ruby"
end
