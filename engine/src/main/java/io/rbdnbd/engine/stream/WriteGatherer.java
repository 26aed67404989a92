package io.rbdnbd.engine.stream;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Gathers outgoing buffers into one direct buffer and hands it to the connection's write each
 * time it fills, so a batch of small replies costs one copy and one syscall and a 32 MiB reply
 * goes out in bounded pieces. One per connection, used by one writing thread at a time.
 */
public final class WriteGatherer {
    /** Writes every remaining byte of a direct buffer. */
    @FunctionalInterface
    public interface Out {
        void writeAll(ByteBuffer direct) throws IOException;
    }

    private final ByteBuffer buf;
    private final Out out;

    public WriteGatherer(int capacity, Out out) {
        this.buf = ByteBuffer.allocateDirect(capacity);
        this.out = out;
    }

    public void write(ByteBuffer[] bufs) throws IOException {
        for (ByteBuffer b : bufs) {
            ByteBuffer rest = b.duplicate();
            while (rest.hasRemaining()) {
                int n = Math.min(rest.remaining(), buf.remaining());
                buf.put(rest.slice().limit(n));
                rest.position(rest.position() + n);
                if (!buf.hasRemaining()) {
                    flush();
                }
            }
        }
        flush();
    }

    private void flush() throws IOException {
        buf.flip();
        if (buf.hasRemaining()) {
            out.writeAll(buf);
        }
        buf.clear();
    }
}
