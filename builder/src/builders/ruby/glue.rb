# wasmless glue: Kubeless's Ruby contract over a WAGI reactor (see ../ruby.rs).
#
# Loaded at build time, before the function's source; the interpreter's state is then
# snapshotted. Per request the host calls Wasmless.handle, which reads the request from stdin
# (CGI variables as NAME=VALUE entries ended by NUL, an empty entry, then the body) and writes
# a WAGI response to stdout: header lines, a blank line, the body.
#
#   def handler(event, context)
#     event   = {'data', 'event-id', 'event-type', 'event-time', 'event-namespace',
#                'extensions' => {'request' => {'method', 'path', 'query', 'query_string',
#                                               'headers'}}}
#     context = {'function-name', 'timeout', 'runtime', 'memory-limit'}
#   a String is the body (text/plain, or application/octet-stream when it is binary), a Hash
#   or an Array is JSON, nil is an empty body, anything else its to_s; a Hash of only
#   statusCode (an Integer), headers and body (String or Symbol keys) is the response itself;
#   an exception is a 500 with its message.

require 'json'
require 'securerandom'
require 'time'
require 'uri'

module Wasmless
  TEXT = 'text/plain; charset=utf-8'
  RESPONSE_KEYS = %w[statusCode headers body].freeze

  class BadRequest < StandardError; end

  class << self
    # Build time: evaluates the function's source (on stdin) at the top level and checks that
    # it defines `function`. The error's message, or '' when it loaded.
    def setup(file, function)
      source = $stdin.binmode.read.force_encoding(Encoding::UTF_8)
      begin
        # What the source prints while it loads is logged, never part of a response.
        $stdout = $stderr
        TOPLEVEL_BINDING.eval(source, "#{file}.rb", 1)
      rescue Exception => e # rubocop:disable Lint/RescueException
        return "the function's source failed to load: #{e.class}: #{e.message}"
      ensure
        $stdout = STDOUT
      end
      unless Object.private_instance_methods(false).include?(function) ||
             Object.public_instance_methods(false).include?(function)
        return "the function's source defines no method #{function} (handler #{file}.#{function})"
      end
      @function = function
      @seeded = false
      GC.start
      ''
    end

    def handle
      unless @seeded
        # Each instance its own seed: the snapshot's would be every instance's.
        srand
        @seeded = true
      end
      cgi, body = parse($stdin.binmode.read)
      response = begin
        # A handler's `puts` is a log line (stderr), as in Kubeless; stdout is the response's.
        $stdout = $stderr
        head(*respond(cgi, body))
      rescue BadRequest => e
        head(400, { 'content-type' => TEXT }, e.message.b)
      rescue Exception => e # rubocop:disable Lint/RescueException
        head(500, { 'content-type' => TEXT }, e.message.to_s.b)
      ensure
        $stdout = STDOUT
      end
      STDOUT.binmode
      STDOUT.write(*response)
      STDOUT.flush
      nil
    end

    private

    def parse(input)
      cgi = {}
      input = input.b
      at = 0
      while (nul = input.index("\0", at))
        entry = input[at...nul]
        at = nul + 1
        break if entry.empty?

        name, value = entry.split('=', 2)
        cgi[name] = value.to_s.force_encoding(Encoding::UTF_8)
      end
      [cgi, input[at..] || ''.b]
    end

    def respond(cgi, body)
      headers = {}
      cgi.each do |name, value|
        headers[name.delete_prefix('HTTP_').downcase.tr('_', '-')] = value if name.start_with?('HTTP_')
      end
      content_type = cgi['CONTENT_TYPE'].to_s
      headers['content-type'] = content_type unless content_type.empty?
      media = content_type.split(';').first.to_s.strip.downcase
      query_string = cgi['QUERY_STRING'].to_s
      event = {
        'data' => data(media, body),
        'event-id' => present(headers['event-id']) || SecureRandom.uuid,
        'event-type' => present(headers['event-type']) || (media.empty? ? 'application/json' : media),
        'event-time' => present(headers['event-time']) || Time.now.utc.iso8601(6),
        'event-namespace' => present(headers['event-namespace']) || 'wasmless.dev',
        'extensions' => {
          'request' => {
            'method' => cgi['REQUEST_METHOD'].to_s,
            'path' => cgi['PATH_INFO'].to_s,
            'query' => query(query_string),
            'query_string' => query_string,
            'headers' => headers
          }
        }
      }
      context = {
        'function-name' => ENV.fetch('FUNC_NAME', ''),
        'timeout' => ENV.fetch('FUNC_TIMEOUT', '180'),
        'runtime' => ENV.fetch('FUNC_RUNTIME', 'ruby'),
        'memory-limit' => ENV.fetch('FUNC_MEMORY_LIMIT', '')
      }
      result(TOPLEVEL_BINDING.receiver.__send__(@function, event, context))
    end

    # Last value wins for a repeated name; bytes that are not UTF-8 become U+FFFD.
    def query(query_string)
      query_string.split('&').each_with_object({}) do |pair, query|
        next if pair.empty?

        name, value = pair.split('=', 2).map do |part|
          URI.decode_www_form_component(part.b.gsub(/%(?![0-9A-Fa-f]{2})/, '%25'))
             .force_encoding(Encoding::UTF_8).scrub
        end
        query[name] = value.to_s
      end
    end

    def present(value)
      value unless value.nil? || value.empty?
    end

    def data(media, body)
      if media == 'application/json' || media.end_with?('+json')
        return nil if body.strip.empty?

        begin
          JSON.parse(body)
        rescue JSON::ParserError => e
          raise BadRequest, "invalid JSON body: #{e.message}"
        end
      else
        text = body.dup.force_encoding(Encoding::UTF_8)
        text.valid_encoding? ? text : body
      end
    end

    # -> [status, {lower-case name => value}, body bytes]
    def result(value)
      status = 200
      headers = {}
      if response?(value)
        value = value.transform_keys(&:to_s)
        status = value['statusCode']
        (value['headers'] || {}).each { |k, v| headers[k.to_s.downcase] = v.to_s }
        value = value['body']
      end
      raise "invalid status code #{status}: an integer from 100 to 599" unless (100..599).cover?(status)

      content_type, bytes = encode(value)
      headers['content-type'] ||= content_type
      headers.delete('content-length')
      [status, headers, bytes]
    end

    def response?(value)
      return false unless value.is_a?(Hash)

      keys = value.keys.map(&:to_s)
      keys.include?('statusCode') && keys.all? { |k| RESPONSE_KEYS.include?(k) } &&
        (value['statusCode'] || value[:statusCode]).is_a?(Integer)
    end

    def encode(value)
      case value
      when nil then [TEXT, ''.b]
      when Hash, Array then ['application/json', JSON.generate(value).b]
      when String
        binary = value.encoding == Encoding::BINARY && !value.ascii_only?
        [binary ? 'application/octet-stream' : TEXT, value.b]
      else [TEXT, value.to_s.b]
      end
    end

    # -> [the WAGI head, body]; raises on a header that cannot be sent.
    def head(status, headers, body)
      out = "Status: #{status}\n".b
      headers.each do |name, value|
        line = "#{name}: #{value}".b
        raise "invalid response header #{name.inspect}" if line.match?(/[\r\n]/n) || name.casecmp?('status')

        out << line << "\n"
      end
      [out << "\n", body]
    end
  end
end
