// wasmless Node.js glue: adapts a `wasi:http/incoming-handler@0.2.10` request
// to the Kubeless function contract `handler(event, context)`.
//
// build.sh bundles this file with an entry module that does
//   import user from '<the user file>';            // CommonJS module.exports
//   export const incomingHandler = makeIncomingHandler(user, '<func>');
// and hands the bundle to componentize-js. The `wasi:*` imports stay external
// and are bound by componentize-js to the component's imports.
//
// Note: module top-level code (this file and the user's file) runs at BUILD
// time inside wizer, not per request. Everything that depends on the request,
// the environment or the clock is therefore done inside `handle`.

import {
  ResponseOutparam,
  OutgoingBody,
  OutgoingResponse,
  Fields,
} from 'wasi:http/types@0.2.10';
import { getEnvironment } from 'wasi:cli/environment@0.2.10';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// wasi:io/streams: blocking-write-and-flush accepts at most 4096 bytes a call.
const WRITE_CHUNK = 4096;
const READ_CHUNK = 65536n;

// A Node-like `process` for user code that reads `process.env.X` at request
// time. StarlingMonkey has no `process` global; env is refreshed per request
// from wasi:cli/environment (values seen at build time are not the runtime's).
if (typeof globalThis.process === 'undefined') {
  globalThis.process = { env: {}, argv: [], platform: 'wasi', version: 'v0-starlingmonkey', versions: {} };
} else if (!globalThis.process.env) {
  globalThis.process.env = {};
}

// An instance's environment never changes (the host sets it when it makes the instance), so
// the host is asked once per instance; `process.env` is still restored on every request.
let instanceEnv;

function readEnv() {
  if (!instanceEnv) {
    instanceEnv = {};
    for (const [k, v] of getEnvironment()) instanceEnv[k] = v;
  }
  const env = instanceEnv;
  const pe = globalThis.process.env;
  for (const k of Object.keys(pe)) if (!(k in env)) delete pe[k];
  Object.assign(pe, env);
  return env;
}

// Results from componentize-js bindings may arrive as {tag, val} or unwrapped.
function unwrap(r) {
  if (r && typeof r === 'object' && 'tag' in r && ('val' in r || r.tag === 'ok')) {
    if (r.tag === 'ok') return r.val;
    if (r.tag === 'err') throw new Error('wasi error: ' + JSON.stringify(r.val));
  }
  return r;
}

function isStreamClosed(e) {
  const p = e && (e.payload !== undefined ? e.payload : e);
  return p && (p.tag === 'closed' || p === 'closed');
}

function methodName(m) {
  if (typeof m === 'string') return m.toUpperCase();
  if (m.tag === 'other') return String(m.val).toUpperCase();
  return String(m.tag).toUpperCase();
}

function readBody(req) {
  const body = unwrap(req.consume());
  const stream = unwrap(body.stream());
  const chunks = [];
  let total = 0;
  for (;;) {
    let buf;
    try {
      buf = unwrap(stream.blockingRead(READ_CHUNK));
    } catch (e) {
      if (isStreamClosed(e)) break;
      throw e;
    }
    if (buf && buf.tag === 'closed') break;
    if (buf && buf.length) {
      chunks.push(buf);
      total += buf.length;
    }
  }
  stream[Symbol.dispose]?.();
  body[Symbol.dispose]?.();
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return all;
}

function parseQuery(q) {
  const out = {};
  if (!q) return out;
  for (const part of q.split('&')) {
    if (!part) continue;
    const i = part.indexOf('=');
    const rawK = i < 0 ? part : part.slice(0, i);
    const rawV = i < 0 ? '' : part.slice(i + 1);
    const dec = (s) => {
      try {
        return decodeURIComponent(s.replace(/\+/g, ' '));
      } catch {
        return s;
      }
    };
    const k = dec(rawK);
    const v = dec(rawV);
    if (k in out) out[k] = Array.isArray(out[k]) ? [...out[k], v] : [out[k], v];
    else out[k] = v;
  }
  return out;
}

function uuid4() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = new Uint8Array(16);
  if (globalThis.crypto && crypto.getRandomValues) crypto.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = (Math.random() * 256) | 0;
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function isJsonType(ct) {
  const t = (ct || '').split(';')[0].trim().toLowerCase();
  return t === 'application/json' || t.endsWith('+json');
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Express's `res` as far as a handler that returns its body uses it: Kubeless's Node runtime gave
// functions `event.extensions.response`, and ported functions set their status and headers there.
class ResponseShim {
  constructor() {
    this.statusCode = 200;
    this.headers = {};
  }
  status(code) {
    this.statusCode = code;
    return this;
  }
  setHeader(name, value) {
    this.headers[String(name).toLowerCase()] = String(value);
    return this;
  }
  set(name, value) {
    if (typeof name === 'object') for (const [k, v] of Object.entries(name)) this.setHeader(k, v);
    else this.setHeader(name, value);
    return this;
  }
  header(name, value) {
    return this.set(name, value);
  }
  getHeader(name) {
    return this.headers[String(name).toLowerCase()];
  }
}

function buildEvent(req, bodyBytes, response) {
  const headers = {};
  for (const [name, value] of req.headers().entries()) {
    const k = name.toLowerCase();
    const v = decoder.decode(value);
    headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
  }
  const pathWithQuery = req.pathWithQuery() || '/';
  const qi = pathWithQuery.indexOf('?');
  const path = qi < 0 ? pathWithQuery : pathWithQuery.slice(0, qi);
  const rawQuery = qi < 0 ? '' : pathWithQuery.slice(qi + 1);
  const contentType = headers['content-type'] || '';

  const text = decoder.decode(bodyBytes);
  let data = text;
  if (isJsonType(contentType) && text.trim() !== '') {
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new HttpError(400, `invalid JSON body: ${e.message}`);
    }
  }

  const request = {
    method: methodName(req.method()),
    path,
    query: parseQuery(rawQuery),
    headers,
    url: pathWithQuery,
  };
  // Express-like helper, not enumerable so JSON.stringify(event) stays clean.
  Object.defineProperty(request, 'get', {
    value: (n) => headers[String(n).toLowerCase()],
    enumerable: false,
  });

  return {
    data,
    'event-id': headers['event-id'] || uuid4(),
    'event-type': headers['event-type'] || contentType || 'text/plain',
    'event-time': headers['event-time'] || new Date().toISOString(),
    'event-namespace': headers['event-namespace'] || 'http.wasmless.dev',
    extensions: { request, response },
  };
}

function buildContext(env) {
  return {
    'function-name': env.FUNC_NAME || '',
    timeout: env.FUNC_TIMEOUT || '180',
    runtime: env.FUNC_RUNTIME || '',
    'memory-limit': env.FUNC_MEMORY_LIMIT || '',
  };
}

// Maps a handler result to [status, content-type, bytes].
const TEXT = 'text/plain; charset=utf-8';

function encodeBody(v) {
  if (v === undefined || v === null) return [TEXT, new Uint8Array(0)];
  if (typeof v === 'string') return [TEXT, encoder.encode(v)];
  if (v instanceof Uint8Array) return ['application/octet-stream', v];
  if (v instanceof ArrayBuffer) return ['application/octet-stream', new Uint8Array(v)];
  if (typeof v === 'object') return ['application/json', encoder.encode(JSON.stringify(v))];
  return [TEXT, encoder.encode(String(v))];
}

const RESPONSE_KEYS = new Set(['statusCode', 'headers', 'body']);

// A returned `{statusCode, headers?, body?}` (the shape Lambda's and OpenFaaS's Node templates
// answer with) is the response itself, not a JSON body.
function isResponseObject(v) {
  return (
    v !== null &&
    typeof v === 'object' &&
    Object.getPrototypeOf(v) === Object.prototype &&
    typeof v.statusCode === 'number' &&
    Object.keys(v).every((k) => RESPONSE_KEYS.has(k))
  );
}

// -> [status, headers ({lower-case name: string}), body bytes]
function encodeResult(v, shim) {
  let status = shim.statusCode;
  const headers = { ...shim.headers };
  let body = v;
  if (isResponseObject(v)) {
    status = v.statusCode;
    for (const [k, value] of Object.entries(v.headers || {})) headers[k.toLowerCase()] = String(value);
    body = v.body;
  }
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    throw new Error(`invalid status code ${status}: an integer from 100 to 599`);
  }
  const [contentType, bytes] = encodeBody(body);
  if (!('content-type' in headers)) headers['content-type'] = contentType;
  // The length is the body's, whatever the handler said.
  delete headers['content-length'];
  return [status, headers, bytes];
}

function sendResponse(responseOut, status, headers, bytes) {
  const list = Object.entries(headers).map(([k, v]) => [k, encoder.encode(v)]);
  list.push(['content-length', encoder.encode(String(bytes.length))]);
  let fields;
  try {
    fields = Fields.fromList(list);
  } catch (e) {
    // A header name or value HTTP does not allow: the handler's error, told plainly.
    status = 500;
    bytes = encoder.encode(`invalid response header: ${errorMessage(e)}`);
    fields = Fields.fromList([
      ['content-type', encoder.encode(TEXT)],
      ['content-length', encoder.encode(String(bytes.length))],
    ]);
  }
  const resp = new OutgoingResponse(fields);
  resp.setStatusCode(status);
  const body = unwrap(resp.body());
  ResponseOutparam.set(responseOut, { tag: 'ok', val: resp });
  const out = unwrap(body.write());
  for (let off = 0; off < bytes.length; off += WRITE_CHUNK) {
    out.blockingWriteAndFlush(bytes.subarray(off, Math.min(off + WRITE_CHUNK, bytes.length)));
  }
  out[Symbol.dispose]();
  OutgoingBody.finish(body, undefined);
}

function errorMessage(e) {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

export function makeIncomingHandler(userModule, funcName) {
  const mod = userModule && userModule.default && !(funcName in userModule) ? userModule.default : userModule;
  const fn = mod && mod[funcName];
  if (typeof fn !== 'function') {
    // Thrown at build time (wizer init), so a wrong handler name fails the build.
    throw new Error(
      `wasmless: handler function '${funcName}' not found in module.exports (exports: ${Object.keys(mod || {}).join(', ') || 'none'})`,
    );
  }

  // Like Kubeless, the function to call comes from FUNC_HANDLER ("file.func")
  // at request time when the host sets it; the build-time name is the default.
  // So one artifact can back several manifests naming functions of the same file.
  function pick(env) {
    const h = env.FUNC_HANDLER;
    if (!h) return fn;
    const name = h.slice(h.lastIndexOf('.') + 1);
    const f = mod[name];
    if (typeof f !== 'function') {
      throw new Error(`handler '${h}': function '${name}' is not exported by the module (exports: ${Object.keys(mod).join(', ')})`);
    }
    return f;
  }

  async function run(request, shim) {
    const env = readEnv();
    const f = pick(env);
    const event = buildEvent(request, readBody(request), shim);
    const context = buildContext(env);
    return await f.call(mod, event, context);
  }

  return {
    async handle(request, responseOut) {
      let status, headers, bytes;
      try {
        const shim = new ResponseShim();
        [status, headers, bytes] = encodeResult(await run(request, shim), shim);
      } catch (e) {
        status = e instanceof HttpError ? e.status : 500;
        headers = { 'content-type': TEXT };
        bytes = encoder.encode(errorMessage(e));
        if (status === 500) console.error(`function error: ${errorMessage(e)}${e && e.stack ? '\n' + e.stack : ''}`);
      }
      sendResponse(responseOut, status, headers, bytes);
    },
  };
}
