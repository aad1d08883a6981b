package dev.wasmless;

import org.teavm.interop.Address;
import org.teavm.interop.Import;

/** WASI's environment calls, which TeaVM's own WASI bindings leave out. */
final class Environ {
    private Environ() {
    }

    @Import(module = "wasi_snapshot_preview1", name = "environ_sizes_get")
    static native short sizesGet(Address count, Address size);

    @Import(module = "wasi_snapshot_preview1", name = "environ_get")
    static native short get(Address environ, Address buf);
}
