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
 *
 * <p>Bytes pass through two direct buffers of the connection's own, one per direction, allocated
 * once: a heap buffer handed to the channel would make the JDK copy through a temporary direct
 * buffer as large as it, cached per thread, so direct memory would grow with the number of
 * socket threads rather than with connections.
 */
final class SocketConnection implements BlockingConnection {
    private final SocketChannel ch;
    private final ByteBuffer readBuf;
    private final WriteGatherer writer;

    /** @param bufferBytes size of each of its two direct buffers (rbdnbd.engine.socket-read-bytes) */
    SocketConnection(SocketChannel ch, int bufferBytes) {
        this.ch = ch;
        this.readBuf = ByteBuffer.allocateDirect(bufferBytes);
        this.writer = new WriteGatherer(bufferBytes, direct -> {
            while (direct.hasRemaining()) {
                ch.write(direct);
            }
        });
    }

    /** Reads through the connection's direct buffer; one thread reads at a time. */
    @Override
    public int read(ByteBuffer buf) throws IOException {
        if (buf.isDirect()) {
            return ch.read(buf);
        }
        readBuf.clear().limit(Math.min(readBuf.capacity(), buf.remaining()));
        int n = ch.read(readBuf);
        if (n > 0) {
            buf.put(readBuf.flip());
        }
        return n;
    }

    /** Gathered through the connection's direct write buffer (32 MiB replies go out in pieces of it). */
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
