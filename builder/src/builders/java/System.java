package io.kubeless;

import java.io.InputStream;
import java.io.PrintStream;
import java.util.Map;

/**
 * {@code System} as functions in {@code io.kubeless} see it: java.lang.System's, except the
 * environment, which TeaVM's class library does not read on WASI (its getenv returns null),
 * and {@code out}, which is stderr: stdout carries the response, and what a function prints
 * is a log line, as in Kubeless. A class of the function's own package comes before
 * java.lang's, so the handler's {@code System.getenv("NAME")} lands here.
 */
public final class System {
    public static final PrintStream out = java.lang.System.err;
    public static final PrintStream err = java.lang.System.err;
    public static final InputStream in = java.lang.System.in;

    private System() {
    }

    public static String getenv(String name) {
        return dev.wasmless.Main.environment().get(name);
    }

    public static Map<String, String> getenv() {
        return java.util.Collections.unmodifiableMap(dev.wasmless.Main.environment());
    }

    public static long currentTimeMillis() { return java.lang.System.currentTimeMillis(); }
    public static long nanoTime() { return java.lang.System.nanoTime(); }
    public static String lineSeparator() { return "\n"; }
    public static int identityHashCode(Object o) { return java.lang.System.identityHashCode(o); }
    public static String getProperty(String key) { return java.lang.System.getProperty(key); }
    public static String getProperty(String key, String def) { return java.lang.System.getProperty(key, def); }
    public static void exit(int status) { java.lang.System.exit(status); }
    public static void gc() { java.lang.System.gc(); }

    public static void arraycopy(Object src, int srcPos, Object dest, int destPos, int length) {
        java.lang.System.arraycopy(src, srcPos, dest, destPos, length);
    }
}
