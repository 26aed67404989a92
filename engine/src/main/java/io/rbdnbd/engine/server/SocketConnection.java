package io.rbdnbd.engine.server;

import io.rbdnbd.engine.stream.BlockingConnection;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;

/**
 * An accepted client socket (Unix or TCP) in blocking mode. SocketChannel keeps separate locks
 * for reading and writing, so the reader and the writer never wait on each other. (Unlike
 * {@code Channels.newInputStream}, which takes the channel's blocking lock for both.)
 */
final class SocketConnection implements BlockingConnection {
    /** Largest single write, and so the largest temporary direct buffer the JDK keeps per thread. */
    static final int MAX_WRITE = 256 * 1024;

    private final SocketChannel ch;

    SocketConnection(SocketChannel ch) {
        this.ch = ch;
    }

    @Override
    public int read(ByteBuffer buf) throws IOException {
        return ch.read(buf);
    }

    /**
     * Writes in gathering batches of at most {@link #MAX_WRITE} bytes: the JDK copies heap buffers
     * through a temporary direct buffer as large as the write and keeps it per thread, so unsliced
     * 32 MiB replies would pin 32 MiB of direct memory on every socket thread.
     */
    @Override
    public void write(ByteBuffer[] bufs) throws IOException {
        List<ByteBuffer> batch = new ArrayList<>();
        int batchBytes = 0;
        for (ByteBuffer b : bufs) {
            ByteBuffer rest = b.duplicate();
            while (rest.hasRemaining()) {
                int n = Math.min(rest.remaining(), MAX_WRITE - batchBytes);
                batch.add(rest.slice().limit(n));
                rest.position(rest.position() + n);
                batchBytes += n;
                if (batchBytes == MAX_WRITE) {
                    writeBatch(batch, batchBytes);
                    batch.clear();
                    batchBytes = 0;
                }
            }
        }
        if (batchBytes > 0) {
            writeBatch(batch, batchBytes);
        }
    }

    private void writeBatch(List<ByteBuffer> batch, long bytes) throws IOException {
        ByteBuffer[] array = batch.toArray(new ByteBuffer[0]);
        while (bytes > 0) {
            bytes -= ch.write(array);
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
