package io.rbdnbd.nativeio;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;

import java.nio.ByteBuffer;

/**
 * A block of native memory handed to asynchronous native calls (librbd reads and writes), which
 * keep using it after the call returns. Comes from a {@link NativeBufferPool} and goes back to it
 * once the native side has completed; until then nothing else may touch it.
 */
public final class NativeBuffer {
    private final Memory memory;
    private final ByteBuffer view;
    private final int sizeClass;

    NativeBuffer(int capacity, int sizeClass) {
        this.memory = new Memory(capacity);
        this.view = memory.getByteBuffer(0, capacity);
        this.sizeClass = sizeClass;
    }

    /** The native address, for the native call. */
    public long address() {
        return Pointer.nativeValue(memory);
    }

    public int capacity() {
        return view.capacity();
    }

    /** A fresh view of the first {@code length} bytes (position 0, limit {@code length}). */
    public ByteBuffer view(int length) {
        return view.duplicate().limit(length);
    }

    int sizeClass() {
        return sizeClass;
    }

    void free() {
        memory.close();
    }
}
