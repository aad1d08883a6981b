;; The outbound probe: a wasi:http handler that sends `GET http://<x-target-authority><x-target-path>`
;; (the values of those request headers) and answers with the status it got, or with
;; 500 + the wasi:http error-code's case number when the request failed (515: HTTP-request-denied).
;; Core module of a component: tests/src/hostile.rs adds the component wrapping with wit-component.
(module
  (import "cm32p2|wasi:http/types@0.2" "[method]incoming-request.headers" (func $request_headers (param i32) (result i32)))
  (import "cm32p2|wasi:http/types@0.2" "[method]fields.get" (func $fields_get (param i32 i32 i32 i32)))
  (import "cm32p2|wasi:http/types@0.2" "[constructor]fields" (func $fields_new (result i32)))
  (import "cm32p2|wasi:http/types@0.2" "[constructor]outgoing-request" (func $request_new (param i32) (result i32)))
  (import "cm32p2|wasi:http/types@0.2" "[method]outgoing-request.set-scheme" (func $set_scheme (param i32 i32 i32 i32 i32) (result i32)))
  (import "cm32p2|wasi:http/types@0.2" "[method]outgoing-request.set-authority" (func $set_authority (param i32 i32 i32 i32) (result i32)))
  (import "cm32p2|wasi:http/types@0.2" "[method]outgoing-request.set-path-with-query" (func $set_path (param i32 i32 i32 i32) (result i32)))
  (import "cm32p2|wasi:http/outgoing-handler@0.2" "handle" (func $send (param i32 i32 i32 i32)))
  (import "cm32p2|wasi:http/types@0.2" "[method]future-incoming-response.subscribe" (func $subscribe (param i32) (result i32)))
  (import "cm32p2|wasi:io/poll@0.2" "[method]pollable.block" (func $block (param i32)))
  (import "cm32p2|wasi:http/types@0.2" "[method]future-incoming-response.get" (func $future_get (param i32 i32)))
  (import "cm32p2|wasi:http/types@0.2" "[method]incoming-response.status" (func $status (param i32) (result i32)))
  (import "cm32p2|wasi:http/types@0.2" "[constructor]outgoing-response" (func $response_new (param i32) (result i32)))
  (import "cm32p2|wasi:http/types@0.2" "[method]outgoing-response.set-status-code" (func $set_status (param i32 i32) (result i32)))
  (import "cm32p2|wasi:http/types@0.2" "[method]outgoing-response.body" (func $response_body (param i32 i32)))
  (import "cm32p2|wasi:http/types@0.2" "[static]outgoing-body.finish" (func $body_finish (param i32 i32 i32 i32)))
  (import "cm32p2|wasi:http/types@0.2" "[static]response-outparam.set" (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))

  (memory (export "cm32p2_memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "x-target-authority")
  (data (i32.const 48) "x-target-path")

  ;; A bump allocator: an instance answers one request.
  (func (export "cm32p2_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $at) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (drop (memory.grow
          (i32.add (i32.const 1)
            (i32.div_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
                       (i32.const 65536)))))))
    (local.get $at))
  (func (export "cm32p2_initialize"))

  ;; The first value of header `name` as (pointer, length) at `out`; (0, 0) when absent.
  (func $header (param $fields i32) (param $name i32) (param $len i32) (param $out i32)
    (call $fields_get (local.get $fields) (local.get $name) (local.get $len) (i32.const 256))
    (if (i32.eqz (i32.load (i32.const 260)))
      (then
        (i32.store (local.get $out) (i32.const 0))
        (i32.store offset=4 (local.get $out) (i32.const 0)))
      (else
        (i32.store (local.get $out) (i32.load (i32.load (i32.const 256))))
        (i32.store offset=4 (local.get $out) (i32.load offset=4 (i32.load (i32.const 256)))))))

  ;; Answers `code` with an empty body.
  (func $respond (param $outparam i32) (param $code i32)
    (local $response i32)
    (local.set $response (call $response_new (call $fields_new)))
    (drop (call $set_status (local.get $response) (local.get $code)))
    (call $response_body (local.get $response) (i32.const 320))
    (call $outparam_set (local.get $outparam) (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $body_finish (i32.load (i32.const 324)) (i32.const 0) (i32.const 0) (i32.const 336)))

  (func (export "cm32p2|wasi:http/incoming-handler@0.2|handle") (param $request i32) (param $outparam i32)
    (local $headers i32) (local $outgoing i32) (local $future i32)
    (local.set $headers (call $request_headers (local.get $request)))
    (call $header (local.get $headers) (i32.const 16) (i32.const 18) (i32.const 200))
    (call $header (local.get $headers) (i32.const 48) (i32.const 13) (i32.const 208))
    (local.set $outgoing (call $request_new (call $fields_new)))
    ;; some(HTTP)
    (drop (call $set_scheme (local.get $outgoing) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))
    (drop (call $set_authority (local.get $outgoing) (i32.const 1)
      (i32.load (i32.const 200)) (i32.load (i32.const 204))))
    (drop (call $set_path (local.get $outgoing) (i32.const 1)
      (i32.load (i32.const 208)) (i32.load (i32.const 212))))
    ;; result<future-incoming-response, error-code> at 400: tag, then the payload at 408.
    (call $send (local.get $outgoing) (i32.const 0) (i32.const 0) (i32.const 400))
    (if (i32.load8_u (i32.const 400))
      (then
        (call $respond (local.get $outparam) (i32.add (i32.const 500) (i32.load8_u (i32.const 408))))
        (return)))
    (local.set $future (i32.load (i32.const 408)))
    (call $block (call $subscribe (local.get $future)))
    ;; option<result<result<incoming-response, error-code>>> at 448: some at 448, the outer
    ;; result at 456, the inner at 464, its payload at 472.
    (call $future_get (local.get $future) (i32.const 448))
    (if (i32.load8_u (i32.const 456))
      (then
        (call $respond (local.get $outparam) (i32.const 599))
        (return)))
    (if (i32.load8_u (i32.const 464))
      (then
        (call $respond (local.get $outparam) (i32.add (i32.const 500) (i32.load8_u (i32.const 472))))
        (return)))
    (call $respond (local.get $outparam) (call $status (i32.load (i32.const 472))))))
