package io.kubeless;

import java.util.Map;

/** Kubeless's Java event: the request's body as text and its event headers. */
public class Event {
    public String Data;
    public String EventID;
    public String EventType;
    public String EventTime;
    public String EventNamespace;
    public Extensions Extensions;

    public Event(String data, String eventId, String eventType, String eventTime, String eventNamespace,
            Extensions extensions) {
        this.Data = data;
        this.EventID = eventId;
        this.EventType = eventType;
        this.EventTime = eventTime;
        this.EventNamespace = eventNamespace;
        this.Extensions = extensions;
    }

    public String getData() { return Data; }
    public String getEventID() { return EventID; }
    public String getEventType() { return EventType; }
    public String getEventTime() { return EventTime; }
    public String getEventNamespace() { return EventNamespace; }
    public Extensions getExtensions() { return Extensions; }

    /** The HTTP request behind the event. */
    public static class Extensions {
        public final String method;
        public final String path;
        public final String queryString;
        /** Lower-case names. */
        public final Map<String, String> headers;
        public final Map<String, String> query;

        public Extensions(String method, String path, String queryString, Map<String, String> headers,
                Map<String, String> query) {
            this.method = method;
            this.path = path;
            this.queryString = queryString;
            this.headers = headers;
            this.query = query;
        }

        public String getMethod() { return method; }
        public String getPath() { return path; }
        public String getQueryString() { return queryString; }
        public String getHeader(String name) { return headers.get(name.toLowerCase()); }
        public String getQuery(String name) { return query.get(name); }
    }
}
