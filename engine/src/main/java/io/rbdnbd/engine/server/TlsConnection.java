package io.rbdnbd.engine.server;

import io.rbdnbd.engine.stream.BlockingConnection;

import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLException;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * TLS over a {@link BlockingConnection}, with the JDK's SSLEngine: the same blocking contract, so
 * the transmission flow runs on it unchanged. One thread reads while another writes: reads unwrap
 * under the read lock, writes wrap under the write lock (a read that must answer the peer, such as
 * a TLS 1.3 key update, takes the write lock for that). Buffers are sized by the session and
 * bounded: one TLS record in, one out, plus a batch of records per write.
 */
final class TlsConnection implements BlockingConnection {
    private static final ByteBuffer[] NOTHING = {ByteBuffer.allocate(0)};
    /** Records wrapped before one write to the socket. */
    private static final int RECORDS_PER_WRITE = 16;

    private final BlockingConnection raw;
    private final SSLEngine engine;
    private final Object readLock = new Object();
    private final Object writeLock = new Object();
    /** Ciphertext read and not yet unwrapped (write mode). */
    private ByteBuffer netIn;
    /** Plaintext unwrapped and not yet handed out (read mode). */
    private ByteBuffer appIn;
    /** Ciphertext to send (write mode between uses). */
    private ByteBuffer netOut;
    private volatile boolean handshakeDone;

    TlsConnection(BlockingConnection raw, SSLEngine engine) {
        this.raw = raw;
        this.engine = engine;
        int packet = engine.getSession().getPacketBufferSize();
        this.netIn = ByteBuffer.allocate(packet);
        this.appIn = ByteBuffer.allocate(engine.getSession().getApplicationBufferSize()).flip();
        this.netOut = ByteBuffer.allocate(packet * RECORDS_PER_WRITE);
    }

    /** Runs the TLS handshake (the server side), blocking until it is done. */
    void handshake() throws IOException {
        engine.beginHandshake();
        while (true) {
            switch (engine.getHandshakeStatus()) {
                case NEED_WRAP -> wrapAndSend(NOTHING);
                case NEED_UNWRAP, NEED_UNWRAP_AGAIN -> {
                    synchronized (readLock) {
                        if (unwrapSome() < 0) {
                            throw new EOFException("the client closed the connection during the TLS handshake");
                        }
                    }
                }
                case NEED_TASK -> runTasks();
                case FINISHED, NOT_HANDSHAKING -> {
                    handshakeDone = true;
                    return;
                }
                default -> throw new SSLException("unexpected TLS handshake status " + engine.getHandshakeStatus());
            }
        }
    }

    @Override
    public int read(ByteBuffer dst) throws IOException {
        synchronized (readLock) {
            while (!appIn.hasRemaining()) {
                if (unwrapSome() < 0) {
                    return -1;
                }
            }
            int n = Math.min(dst.remaining(), appIn.remaining());
            ByteBuffer slice = appIn.slice().limit(n);
            dst.put(slice);
            appIn.position(appIn.position() + n);
            return n;
        }
    }

    /** One unwrap into appIn, reading ciphertext when a record is incomplete; -1 at the end of the stream. */
    private int unwrapSome() throws IOException {
        while (true) {
            netIn.flip();
            appIn.compact();
            SSLEngineResult r;
            try {
                r = engine.unwrap(netIn, appIn);
            } finally {
                netIn.compact();
                appIn.flip();
            }
            switch (r.getStatus()) {
                case OK -> {
                    followUp(r);
                    return r.bytesProduced();
                }
                case BUFFER_UNDERFLOW -> {
                    if (!netIn.hasRemaining()) { // a record larger than the buffer: grow to the session's size
                        netIn = grow(netIn, engine.getSession().getPacketBufferSize());
                    }
                    if (raw.read(netIn) < 0) {
                        return -1;
                    }
                }
                case BUFFER_OVERFLOW -> {
                    ByteBuffer bigger = ByteBuffer.allocate(appIn.remaining() + engine.getSession().getApplicationBufferSize());
                    bigger.put(appIn).flip();
                    appIn = bigger;
                }
                case CLOSED -> {
                    followUp(r);
                    return -1;
                }
                default -> throw new SSLException("unexpected unwrap status " + r.getStatus());
            }
        }
    }

    /** After the handshake: tasks and answers (key updates, close_notify) that an unwrap asks for. */
    private void followUp(SSLEngineResult r) throws IOException {
        if (r.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_TASK) {
            runTasks();
        }
        if (handshakeDone && engine.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_WRAP) {
            wrapAndSend(NOTHING);
        }
    }

    @Override
    public void write(ByteBuffer[] bufs) throws IOException {
        wrapAndSend(bufs);
    }

    private void wrapAndSend(ByteBuffer[] srcs) throws IOException {
        synchronized (writeLock) {
            int packet = engine.getSession().getPacketBufferSize();
            boolean once = true; // handshake and close messages have no application bytes
            while (once || remaining(srcs)) {
                once = false;
                netOut.clear();
                while (netOut.remaining() >= packet) {
                    SSLEngineResult r = engine.wrap(srcs, netOut);
                    if (r.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_TASK) {
                        runTasks();
                    }
                    if (r.getStatus() == SSLEngineResult.Status.CLOSED) {
                        if (remaining(srcs)) {
                            throw new SSLException("the TLS session is closed");
                        }
                        break;
                    }
                    if (r.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
                        netOut = grow(netOut, packet);
                        continue;
                    }
                    if (!remaining(srcs) || r.bytesProduced() == 0) {
                        break;
                    }
                }
                netOut.flip();
                if (netOut.hasRemaining()) {
                    raw.write(new ByteBuffer[] {netOut});
                }
            }
        }
    }

    private static boolean remaining(ByteBuffer[] bufs) {
        for (ByteBuffer b : bufs) {
            if (b.hasRemaining()) {
                return true;
            }
        }
        return false;
    }

    private static ByteBuffer grow(ByteBuffer b, int more) {
        ByteBuffer bigger = ByteBuffer.allocate(b.capacity() + more);
        b.flip();
        bigger.put(b);
        return bigger;
    }

    private void runTasks() {
        Runnable task;
        while ((task = engine.getDelegatedTask()) != null) {
            task.run();
        }
    }

    @Override
    public void shutdownInput() throws IOException {
        raw.shutdownInput();
    }

    /** Sends close_notify, then ends the stream below. */
    @Override
    public void shutdownOutput() throws IOException {
        synchronized (writeLock) {
            engine.closeOutbound();
            try {
                wrapAndSend(NOTHING);
            } finally {
                raw.shutdownOutput();
            }
        }
    }

    @Override
    public void close() throws IOException {
        raw.close();
    }
}
