//! A WASI HTTP component for wasmless's examples and tests: it answers with the method, the path
//! and the request body, and `$GREETING` when set. `/spin` never returns (to show timeouts).

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path.starts_with("/spin") {
            #[allow(clippy::empty_loop)]
            loop {}
        }
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Post => "POST".to_string(),
            Method::Put => "PUT".to_string(),
            Method::Delete => "DELETE".to_string(),
            other => format!("{other:?}"),
        };
        let mut body = Vec::new();
        if let Ok(incoming) = request.consume() {
            if let Ok(mut stream) = incoming.stream() {
                let _ = stream.read_to_end(&mut body);
            }
        }
        eprintln!("hello-http: {method} {path}");

        let mut text = format!("hello from wasi:http: {method} {path}\n");
        if let Ok(greeting) = std::env::var("GREETING") {
            text.push_str(&format!("greeting: {greeting}\n"));
        }
        text.push_str(&String::from_utf8_lossy(&body));

        let headers = Fields::from_list(&[
            ("content-type".to_string(), b"text/plain".to_vec()),
            ("x-abi".to_string(), b"wasi-http".to_vec()),
        ])
        .expect("static headers are valid");
        let response = OutgoingResponse::new(headers);
        let out_body = response.body().expect("first call to body()");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = out_body.write().expect("first call to write()");
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        drop(out);
        let _ = OutgoingBody::finish(out_body, None);
    }
}
