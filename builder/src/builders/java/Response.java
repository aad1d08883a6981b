package io.kubeless;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A status and headers of the function's own: return one, e.g.
 * {@code new Response(201).header("Location", "/items/1").body(Map.of("id", 1))}.
 * The body is encoded as a returned value is: a String as text, a Map or a List as JSON.
 */
public class Response {
    public final int status;
    public final Map<String, String> headers = new LinkedHashMap<>();
    public Object body;

    public Response(int status) {
        this.status = status;
    }

    public Response header(String name, String value) {
        headers.put(name.toLowerCase(), value);
        return this;
    }

    public Response body(Object body) {
        this.body = body;
        return this;
    }
}
