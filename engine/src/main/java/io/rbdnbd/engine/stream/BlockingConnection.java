package io.rbdnbd.engine.stream;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * One end of a byte connection with blocking reads and writes: an accepted socket of the export
 * server, or the daemon's end of the socketpair handed to the kernel. One thread reads while
 * another writes; neither may hold up the other.
 */
public interface BlockingConnection {

    /** Reads at least one byte into {@code buf} (at its position), blocking; -1 at end of stream. */
    int read(ByteBuffer buf) throws IOException;

    /** Writes every remaining byte of every buffer, blocking as needed. */
    void write(ByteBuffer[] bufs) throws IOException;

    /** Stop reading: a blocked or later read returns end of stream. */
    void shutdownInput() throws IOException;

    /** No more writes: the peer sees end of stream once it has read what was written. */
    void shutdownOutput() throws IOException;

    /** Releases the connection; blocked reads and writes fail. */
    void close() throws IOException;

    /** A blocking InputStream view, for the handshake that runs before the stream starts. */
    default java.io.InputStream inputStream() {
        return new java.io.InputStream() {
            @Override
            public int read() throws IOException {
                byte[] one = new byte[1];
                return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
            }

            @Override
            public int read(byte[] b, int off, int len) throws IOException {
                return len == 0 ? 0 : BlockingConnection.this.read(ByteBuffer.wrap(b, off, len));
            }
        };
    }

    /** A blocking OutputStream view, for the handshake. */
    default java.io.OutputStream outputStream() {
        return new java.io.OutputStream() {
            @Override
            public void write(int b) throws IOException {
                write(new byte[] {(byte) b}, 0, 1);
            }

            @Override
            public void write(byte[] b, int off, int len) throws IOException {
                BlockingConnection.this.write(new ByteBuffer[] {ByteBuffer.wrap(b, off, len)});
            }
        };
    }
}
