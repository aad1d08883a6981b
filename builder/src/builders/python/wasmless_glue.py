"""wasmless glue: adapts wasi:http/incoming-handler to the Kubeless Python contract.

Part of the interpreter every Python function shares: `wasmless_app.py` imports
the function's module and makes its handler with `make_incoming_handler`.

Contract (see README.md):
  handler(event, context) where
    event = {"data", "event-id", "event-type", "event-time", "event-namespace",
             "extensions": {"request": {"method", "path", "query", "headers", ...}}}
    context = {"function-name", "timeout", "runtime", "memory-limit"}
  return str -> 200 text/plain; dict/list -> 200 application/json;
         bytes/bytearray -> 200 application/octet-stream; None -> 200 empty;
         other -> str(value) as text/plain; exception -> 500, body = str(exception);
         {"statusCode": int, "headers": {...}, "body": ...} (only those keys) -> that
         status and those headers, the body encoded by the rules above.
"""

import datetime
import json
import os
import sys
import traceback
import uuid
from urllib.parse import parse_qsl

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import types as http
from wit_world.imports.streams import StreamError_Closed

_READ_CHUNK = 64 * 1024
_WRITE_CHUNK = 4096  # blocking-write-and-flush accepts at most 4096 bytes per call


def _method_name(method) -> str:
    if isinstance(method, http.Method_Other):
        return method.value
    # Method_Get -> "GET"
    return type(method).__name__.split("_", 1)[1].upper()


def _read_body(request) -> bytes:
    chunks = []
    body = request.consume()
    with body:
        stream = body.stream()
        with stream:
            while True:
                try:
                    chunk = stream.blocking_read(_READ_CHUNK)
                except Err as e:
                    if isinstance(e.value, StreamError_Closed):
                        break
                    raise
                chunks.append(chunk)
        # dropping the body here is fine: we don't care about request trailers
    return b"".join(chunks)


def _headers_dict(fields) -> dict:
    out = {}
    for name, value in fields.entries():
        name = name.lower()
        text = value.decode("latin-1")
        out[name] = out[name] + ", " + text if name in out else text
    return out


def _now_rfc3339() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + "%06dZ" % now.microsecond


def _context() -> dict:
    env = os.environ
    return {
        "function-name": env.get("FUNC_NAME", ""),
        "timeout": env.get("FUNC_TIMEOUT", "180"),
        "runtime": env.get("FUNC_RUNTIME", "python"),
        "memory-limit": env.get("FUNC_MEMORY_LIMIT", ""),
    }


class _BadRequest(Exception):
    pass


def _event(request) -> dict:
    headers = _headers_dict(request.headers())
    method = _method_name(request.method())
    path_with_query = request.path_with_query() or "/"
    path, _, query_string = path_with_query.partition("?")
    # last value wins for repeated keys (like bottle's request.query[key])
    query = dict(parse_qsl(query_string, keep_blank_values=True))

    raw = _read_body(request)
    content_type = headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        if raw.strip():
            try:
                data = json.loads(raw)
            except ValueError as e:
                raise _BadRequest("invalid JSON body: %s" % e)
        else:
            data = None
    else:
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError:
            data = raw  # not text: hand over the bytes untouched

    return {
        "data": data,
        "event-id": headers.get("event-id") or str(uuid.uuid4()),
        "event-type": headers.get("event-type") or (media_type or "application/json"),
        "event-time": headers.get("event-time") or _now_rfc3339(),
        "event-namespace": headers.get("event-namespace") or "wasmless.dev",
        "extensions": {
            "request": {
                "method": method,
                "path": path,
                "query": query,
                "query_string": query_string,
                "headers": headers,
                "authority": request.authority(),
            }
        },
    }


_TEXT = "text/plain; charset=utf-8"
_RESPONSE_KEYS = {"statusCode", "headers", "body"}


def _encode_body(result):
    """-> (content-type, body bytes)"""
    if result is None:
        return _TEXT, b""
    if isinstance(result, str):
        return _TEXT, result.encode("utf-8")
    if isinstance(result, (bytes, bytearray, memoryview)):
        return "application/octet-stream", bytes(result)
    if isinstance(result, (dict, list, tuple, bool, int, float)):
        return "application/json", json.dumps(result).encode("utf-8")
    return _TEXT, str(result).encode("utf-8")


def _is_response(result) -> bool:
    """A returned {"statusCode", "headers"?, "body"?} (the shape Lambda's and OpenFaaS's Python
    templates answer with) is the response itself, not a JSON body."""
    return (
        type(result) is dict
        and type(result.get("statusCode")) is int
        and set(result) <= _RESPONSE_KEYS
    )


def _encode_result(result):
    """-> (status, headers {lower-case name: str}, body bytes)"""
    status, headers, body = 200, {}, result
    if _is_response(result):
        status, body = result["statusCode"], result.get("body")
        headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        if not 100 <= status <= 599:
            raise ValueError("invalid status code %d: an integer from 100 to 599" % status)
    content_type, data = _encode_body(body)
    headers.setdefault("content-type", content_type)
    headers.pop("content-length", None)  # the length is the body's, whatever the handler said
    return status, headers, data


def _fields(headers: dict, body: bytes):
    pairs = [(k, v.encode("latin-1")) for k, v in headers.items()]
    pairs.append(("content-length", str(len(body)).encode("latin-1")))
    return http.Fields.from_list(pairs)


def _send(response_out, status: int, headers: dict, body: bytes) -> None:
    try:
        fields = _fields(headers, body)
    except Exception as e:
        # A header name or value HTTP does not allow: the handler's error, told plainly.
        status, body = 500, ("invalid response header: %r" % (e,)).encode("utf-8")
        fields = _fields({"content-type": _TEXT}, body)
    response = http.OutgoingResponse(fields)
    response.set_status_code(status)
    outgoing = response.body()
    http.ResponseOutparam.set(response_out, Ok(response))
    stream = outgoing.write()
    with stream:
        for i in range(0, len(body), _WRITE_CHUNK):
            stream.blocking_write_and_flush(body[i:i + _WRITE_CHUNK])
    http.OutgoingBody.finish(outgoing, None)


def send_text(response_out, status: int, text: str) -> None:
    """Answers `status` with `text` as a plain-text body."""
    _send(response_out, status, {"content-type": _TEXT}, text.encode("utf-8"))


def make_incoming_handler(func, handler_name: str):
    class IncomingHandler(exports.IncomingHandler):
        def handle(self, request, response_out) -> None:
            try:
                event = _event(request)
            except _BadRequest as e:
                _send(response_out, 400, {"content-type": _TEXT}, str(e).encode("utf-8"))
                return
            try:
                result = func(event, _context())
                status, headers, body = _encode_result(result)
            except Exception as e:
                traceback.print_exc(file=sys.stderr)  # the host keeps stderr as the function's log
                status, headers, body = 500, {"content-type": _TEXT}, str(e).encode("utf-8")
            _send(response_out, status, headers, body)

    IncomingHandler.__qualname__ = "IncomingHandler[%s]" % handler_name
    return IncomingHandler
