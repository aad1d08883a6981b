package io.kubeless;

/** Kubeless's Java context: the function's name, timeout, runtime and memory limit. */
public class Context {
    public String FunctionName;
    public String Timeout;
    public String Runtime;
    public String MemoryLimit;

    public Context(String functionName, String timeout, String runtime, String memoryLimit) {
        this.FunctionName = functionName;
        this.Timeout = timeout;
        this.Runtime = runtime;
        this.MemoryLimit = memoryLimit;
    }

    public String getFunctionName() { return FunctionName; }
    public String getTimeout() { return Timeout; }
    public String getRuntime() { return Runtime; }
    public String getMemoryLimit() { return MemoryLimit; }
}
