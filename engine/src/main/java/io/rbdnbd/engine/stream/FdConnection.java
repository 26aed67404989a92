package io.rbdnbd.engine.stream;

import io.rbdnbd.nativeio.LibC;
import io.rbdnbd.nativeio.NativeException;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A connected socket known only by its file descriptor: the daemon's end of the socketpair whose
 * other end the kernel's NBD driver holds. Bytes pass through one direct buffer per direction,
 * so the reader and the writer never share state.
 */
public final class FdConnection implements BlockingConnection {
    private static final int BUFFER = 256 * 1024;
    /** Direct memory one connection holds: its read buffer and its write buffer. */
    public static final long DIRECT_BYTES = 2L * BUFFER;

    private final int fd;
    private final ByteBuffer readBuf = ByteBuffer.allocateDirect(BUFFER);
    private final WriteGatherer writer;
    private volatile boolean closed;

    public FdConnection(int fd) {
        this.fd = fd;
        this.writer = new WriteGatherer(BUFFER, direct -> LibC.writeFully(fd, direct));
    }

    public int fd() {
        return fd;
    }

    @Override
    public int read(ByteBuffer buf) throws IOException {
        if (closed) {
            return -1;
        }
        readBuf.clear().limit(Math.min(BUFFER, buf.remaining()));
        int n = LibC.readFd(fd, readBuf);
        if (n == 0) {
            return -1;
        }
        buf.put(readBuf.flip());
        return n;
    }

    @Override
    public void write(ByteBuffer[] bufs) throws IOException {
        writer.write(bufs);
    }

    @Override
    public void shutdownInput() throws IOException {
        if (!closed) {
            LibC.shutdownFd(fd, LibC.SHUT_RD);
        }
    }

    @Override
    public void shutdownOutput() throws IOException {
        if (!closed) {
            LibC.shutdownFd(fd, LibC.SHUT_WR);
        }
    }

    /**
     * Shuts both directions down (which wakes a thread blocked in read, as close alone would not)
     * and releases the descriptor. Call once the stream on it has ended.
     */
    @Override
    public synchronized void close() throws NativeException {
        if (!closed) {
            closed = true;
            try {
                LibC.shutdownFd(fd, 2 /* SHUT_RDWR */);
            } finally {
                LibC.closeFd(fd);
            }
        }
    }
}
