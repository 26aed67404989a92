package io.rbdnbd.engine.server;

import io.rbdnbd.engine.stream.BlockingConnection;
import io.rbdnbd.engine.stream.WriteGatherer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

/**
 * An accepted client socket (Unix or TCP) in blocking mode. SocketChannel keeps separate locks
 * for reading and writing, so the reader and the writer never wait on each other. (Unlike
 * {@code Channels.newInputStream}, which takes the channel's blocking lock for both.)
 */
final class SocketConnection implements BlockingConnection {
    /** Bytes gathered per write(2). */
    private static final int MAX_WRITE = 256 * 1024;

    private final SocketChannel ch;
    private final WriteGatherer writer;

    SocketConnection(SocketChannel ch) {
        this.ch = ch;
        this.writer = new WriteGatherer(MAX_WRITE, direct -> {
            while (direct.hasRemaining()) {
                ch.write(direct);
            }
        });
    }

    @Override
    public int read(ByteBuffer buf) throws IOException {
        return ch.read(buf);
    }

    /**
     * Gathered through a direct buffer of our own: heap buffers handed to the channel would be
     * copied by the JDK through a temporary direct buffer as large as each, kept per thread, so
     * 32 MiB replies would pin 32 MiB of direct memory on every socket thread.
     */
    @Override
    public void write(ByteBuffer[] bufs) throws IOException {
        writer.write(bufs);
    }

    @Override
    public void shutdownInput() throws IOException {
        if (ch.isOpen()) {
            ch.shutdownInput();
        }
    }

    @Override
    public void shutdownOutput() throws IOException {
        if (ch.isOpen()) {
            ch.shutdownOutput();
        }
    }

    @Override
    public void close() throws IOException {
        ch.close();
    }
}
