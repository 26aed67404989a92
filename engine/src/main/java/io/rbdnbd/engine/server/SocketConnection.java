package io.rbdnbd.engine.server;

import io.rbdnbd.engine.stream.BlockingConnection;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

/**
 * An accepted client socket (Unix or TCP) in blocking mode. SocketChannel keeps separate locks
 * for reading and writing, so the reader and the writer never wait on each other. (Unlike
 * {@code Channels.newInputStream}, which takes the channel's blocking lock for both.)
 */
final class SocketConnection implements BlockingConnection {
    private final SocketChannel ch;

    SocketConnection(SocketChannel ch) {
        this.ch = ch;
    }

    @Override
    public int read(ByteBuffer buf) throws IOException {
        return ch.read(buf);
    }

    @Override
    public void write(ByteBuffer[] bufs) throws IOException {
        long left = 0;
        for (ByteBuffer b : bufs) {
            left += b.remaining();
        }
        while (left > 0) {
            left -= ch.write(bufs);
        }
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
