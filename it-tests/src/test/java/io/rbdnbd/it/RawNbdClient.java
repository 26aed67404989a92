package io.rbdnbd.it;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A hand-written NBD client speaking the wire protocol byte by byte, to send what well-behaved
 * clients never do. Its constants are written out from the NBD spec, not taken from the server.
 * Every read has a deadline, so a server that hangs fails the test instead of blocking it.
 */
final class RawNbdClient implements AutoCloseable {
    static final long NBDMAGIC = 0x4e42444d41474943L;
    static final long IHAVEOPT = 0x49484156454F5054L;
    static final int REQUEST_MAGIC = 0x25609513;
    static final int SIMPLE_REPLY_MAGIC = 0x67446698;

    static final int CLIENT_FIXED_NEWSTYLE = 1;
    static final int CLIENT_NO_ZEROES = 2;
    static final int OPT_EXPORT_NAME = 1;
    static final int OPT_ABORT = 2;
    static final int OPT_LIST = 3;
    static final int OPT_INFO = 6;
    static final int OPT_GO = 7;
    static final int OPT_STRUCTURED_REPLY = 8;
    static final int OPT_SET_META_CONTEXT = 10;
    static final long OPTION_REPLY_MAGIC = 0x3e889045565a9L;
    static final int REP_ACK = 1;
    static final int REP_SERVER = 2;
    static final int REP_INFO = 3;
    static final int REP_META_CONTEXT = 4;
    static final int REP_ERR_UNSUP = 0x80000001;
    static final int INFO_EXPORT = 0;

    static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;
    static final int REPLY_FLAG_DONE = 1;
    static final int REPLY_TYPE_NONE = 0;
    static final int REPLY_TYPE_OFFSET_DATA = 1;
    static final int REPLY_TYPE_OFFSET_HOLE = 2;
    static final int REPLY_TYPE_BLOCK_STATUS = 5;
    static final int REPLY_TYPE_ERROR = 0x8001;
    static final int CMD_BLOCK_STATUS = 7;
    static final int CMD_FLAG_REQ_ONE = 1 << 3;

    static final int CMD_READ = 0;
    static final int CMD_WRITE = 1;
    static final int CMD_DISC = 2;
    static final int CMD_FLUSH = 3;
    static final int CMD_TRIM = 4;
    static final int CMD_WRITE_ZEROES = 6;

    static final int FLAG_READ_ONLY = 1 << 1;

    static final int EPERM = 1;
    static final int EINVAL = 22;
    static final int ENOSPC = 28;

    static final Duration TIMEOUT = Duration.ofSeconds(20);

    record Export(long size, int flags) {
    }

    record Reply(long handle, int error, byte[] data) {
    }

    /** One reply to an option during the handshake. */
    record OptionReply(int option, int type, byte[] data) {
    }

    /**
     * One structured reply chunk, or a simple reply (type -1, error in {@code error}) where the
     * server may still answer that way.
     */
    record Chunk(long handle, int flags, int type, byte[] payload, int error) {
        boolean done() {
            return type == -1 || (flags & REPLY_FLAG_DONE) != 0;
        }
    }

    private final SocketChannel ch;
    /** One selector per direction, so one thread may write while another reads. */
    private final Selector readSelector;
    private final SelectionKey readKey;
    private final Selector writeSelector;
    private final SelectionKey writeKey;
    /** Handles of READs still waiting for their reply, with their lengths. */
    private final Map<Long, Integer> pendingReads = new HashMap<>();

    private RawNbdClient(SocketChannel ch) throws IOException {
        this.ch = ch;
        ch.configureBlocking(false);
        this.readSelector = Selector.open();
        this.readKey = ch.register(readSelector, SelectionKey.OP_READ);
        this.writeSelector = Selector.open();
        this.writeKey = ch.register(writeSelector, SelectionKey.OP_WRITE);
    }

    static RawNbdClient unix(Path socket) {
        return connect(StandardProtocolFamily.UNIX, UnixDomainSocketAddress.of(socket));
    }

    static RawNbdClient tcp(int port) {
        return connect(StandardProtocolFamily.INET, new InetSocketAddress("127.0.0.1", port));
    }

    private static RawNbdClient connect(StandardProtocolFamily family, SocketAddress address) {
        try {
            SocketChannel ch = SocketChannel.open(family);
            ch.connect(address); // blocking connect; local sockets answer at once
            return new RawNbdClient(ch);
        } catch (IOException e) {
            throw new AssertionError("cannot connect to " + address + ": " + e, e);
        }
    }

    /** Reads exactly n bytes; fails on EOF or when they do not arrive in time. */
    byte[] readExactly(int n, Duration timeout, String what) throws IOException {
        return readExactly(n, timeout, what, false);
    }

    /** As above; with {@code eofOk}, an EOF before the first byte returns null. */
    private byte[] readExactly(int n, Duration timeout, String what, boolean eofOk) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(n);
        long deadline = System.nanoTime() + timeout.toNanos();
        while (buf.hasRemaining()) {
            int r = ch.read(buf);
            if (r < 0) {
                if (eofOk && buf.position() == 0) {
                    return null;
                }
                fail("server closed the connection while " + what + " (" + buf.position() + " of " + n + " bytes read)");
            }
            if (r == 0) {
                long left = (deadline - System.nanoTime()) / 1_000_000;
                if (left <= 0) {
                    fail("timed out after " + timeout + " while " + what + " (" + buf.position() + " of " + n
                            + " bytes read)");
                }
                readSelector.select(left);
                readSelector.selectedKeys().clear();
            }
        }
        return buf.array();
    }

    void write(ByteBuffer buf) throws IOException {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (buf.hasRemaining()) {
            if (ch.write(buf) == 0) {
                long left = (deadline - System.nanoTime()) / 1_000_000;
                if (left <= 0) {
                    fail("timed out writing to the server (" + buf.remaining() + " bytes left)");
                }
                writeSelector.select(left);
                writeSelector.selectedKeys().clear();
            }
        }
    }

    void write(byte[] bytes) throws IOException {
        write(ByteBuffer.wrap(bytes));
    }

    /** Reads the 18-byte greeting, checks its magics, returns the handshake flags. */
    int readGreeting() throws IOException {
        ByteBuffer g = ByteBuffer.wrap(readExactly(18, TIMEOUT, "reading the greeting"));
        assertEquals(NBDMAGIC, g.getLong(), "greeting: NBDMAGIC");
        assertEquals(IHAVEOPT, g.getLong(), "greeting: IHAVEOPT (newstyle)");
        int flags = g.getShort() & 0xffff;
        assertEquals(1, flags & 1, "greeting: the server is fixed-newstyle");
        return flags;
    }

    /**
     * The oldest way in: client flags, then NBD_OPT_EXPORT_NAME with an empty name; reads the
     * export size, transmission flags and (without NO_ZEROES) the 124 zero bytes.
     */
    Export handshake(int clientFlags) throws IOException {
        readGreeting();
        write(ByteBuffer.allocate(4).putInt(clientFlags).flip());
        write(ByteBuffer.allocate(16).putLong(IHAVEOPT).putInt(OPT_EXPORT_NAME).putInt(0).flip());
        ByteBuffer r = ByteBuffer.wrap(readExactly(10, TIMEOUT, "reading the NBD_OPT_EXPORT_NAME reply"));
        long size = r.getLong();
        int flags = r.getShort() & 0xffff;
        if ((clientFlags & CLIENT_NO_ZEROES) == 0) {
            assertArrayEquals(new byte[124], readExactly(124, TIMEOUT, "reading the 124 zero bytes"),
                    "124 zero bytes after the export flags");
        }
        assertEquals(1, flags & 1, "NBD_FLAG_HAS_FLAGS in the transmission flags");
        return new Export(size, flags);
    }

    Export handshake() throws IOException {
        return handshake(CLIENT_FIXED_NEWSTYLE);
    }

    /** Sends one option (after the greeting and client flags). */
    void sendOption(int option, byte[] data) throws IOException {
        write(ByteBuffer.allocate(16 + data.length).putLong(IHAVEOPT).putInt(option).putInt(data.length).put(data).flip());
    }

    /** Reads one option reply, checking its magic and that it answers {@code option}. */
    OptionReply readOptionReply(int option) throws IOException {
        ByteBuffer h = ByteBuffer.wrap(readExactly(20, TIMEOUT, "reading an option reply to " + option));
        assertEquals(OPTION_REPLY_MAGIC, h.getLong(), "option reply magic");
        int opt = h.getInt();
        int type = h.getInt();
        int length = h.getInt();
        assertEquals(option, opt, "option reply answers option " + option);
        checkOptionReplyLength(length);
        byte[] data = length == 0 ? new byte[0] : readExactly(length, TIMEOUT, "reading option reply data");
        return new OptionReply(opt, type, data);
    }

    private static void checkOptionReplyLength(int length) {
        if (length < 0 || length > (1 << 20)) {
            fail("implausible option reply length " + (length & 0xffffffffL));
        }
    }

    /** Sends an option and reads replies up to and including the final one (ACK or an error). */
    java.util.List<OptionReply> option(int option, byte[] data) throws IOException {
        sendOption(option, data);
        java.util.List<OptionReply> replies = new java.util.ArrayList<>();
        while (true) {
            OptionReply r = readOptionReply(option);
            replies.add(r);
            if (r.type() == REP_ACK || r.type() < 0) {
                return replies;
            }
        }
    }

    static byte[] nameAndInfos(String name, int... infos) {
        byte[] n = name.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + n.length + 2 + 2 * infos.length).putInt(n.length).put(n)
                .putShort((short) infos.length);
        for (int i : infos) {
            b.putShort((short) i);
        }
        return b.array();
    }

    static byte[] metaContextQuery(String name, String... queries) {
        byte[] n = name.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        int len = 4 + n.length + 4;
        for (String q : queries) {
            len += 4 + q.getBytes(java.nio.charset.StandardCharsets.UTF_8).length;
        }
        ByteBuffer b = ByteBuffer.allocate(len).putInt(n.length).put(n).putInt(queries.length);
        for (String q : queries) {
            byte[] qb = q.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            b.putInt(qb.length).put(qb);
        }
        return b.array();
    }

    /** Reads the next reply, structured chunk or simple reply (a simple READ reply carries no data here). */
    Chunk readChunk() throws IOException {
        ByteBuffer m = ByteBuffer.wrap(readExactly(4, TIMEOUT, "reading a reply magic"));
        int magic = m.getInt();
        if (magic == SIMPLE_REPLY_MAGIC) {
            ByteBuffer h = ByteBuffer.wrap(readExactly(12, TIMEOUT, "reading a simple reply"));
            int error = h.getInt();
            return new Chunk(h.getLong(), 0, -1, new byte[0], error);
        }
        if (magic != STRUCTURED_REPLY_MAGIC) {
            fail(String.format("reply magic 0x%08x is neither simple nor structured", magic));
        }
        ByteBuffer h = ByteBuffer.wrap(readExactly(16, TIMEOUT, "reading a structured reply chunk header"));
        int flags = h.getShort() & 0xffff;
        int type = h.getShort() & 0xffff;
        long handle = h.getLong();
        int length = h.getInt();
        if (length < 0 || length > (64 << 20)) {
            fail("implausible chunk length " + (length & 0xffffffffL));
        }
        byte[] payload = length == 0 ? new byte[0] : readExactly(length, TIMEOUT, "reading a chunk payload");
        int error = 0;
        if ((type & 0x8000) != 0) {
            checkErrorChunkLength(payload.length);
            error = ByteBuffer.wrap(payload).getInt();
        }
        return new Chunk(handle, flags, type, payload, error);
    }

    private static void checkErrorChunkLength(int n) {
        if (n < 6) {
            fail("error chunk payload of " + n + " bytes (at least 6: error, message length)");
        }
    }

    static ByteBuffer requestBytes(int magic, int flags, int type, long handle, long offset, long length, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(28 + (payload == null ? 0 : payload.length));
        b.putInt(magic).putShort((short) flags).putShort((short) type).putLong(handle).putLong(offset).putInt((int) length);
        if (payload != null) {
            b.put(payload);
        }
        return b.flip();
    }

    /** Sends one request (a WRITE's payload right behind its header). */
    void request(int flags, int type, long handle, long offset, long length, byte[] payload) throws IOException {
        if (type == CMD_READ) {
            pendingReads.put(handle, (int) length);
        }
        write(requestBytes(REQUEST_MAGIC, flags, type, handle, offset, length, payload));
    }

    void read(long handle, long offset, int length) throws IOException {
        request(0, CMD_READ, handle, offset, length, null);
    }

    void writeData(long handle, long offset, byte[] data) throws IOException {
        request(0, CMD_WRITE, handle, offset, data.length, data);
    }

    /** The next simple reply; a successful READ's data is read along with it. */
    Reply readReply() throws IOException {
        return readReply(TIMEOUT);
    }

    Reply readReply(Duration timeout) throws IOException {
        Reply r = readReplyOrEof(timeout);
        if (r == null) {
            fail("server closed the connection while reading a reply header");
        }
        return r;
    }

    /** The next simple reply, or null when the server closed the connection between replies. */
    Reply readReplyOrEof(Duration timeout) throws IOException {
        byte[] header = readExactly(16, timeout, "reading a reply header", true);
        if (header == null) {
            return null;
        }
        ByteBuffer h = ByteBuffer.wrap(header);
        int magic = h.getInt();
        if (magic != SIMPLE_REPLY_MAGIC) {
            fail(String.format("reply magic 0x%08x, expected the simple reply magic 0x%08x", magic, SIMPLE_REPLY_MAGIC));
        }
        int error = h.getInt();
        long handle = h.getLong();
        Integer readLength = pendingReads.remove(handle);
        byte[] data = new byte[0];
        if (error == 0 && readLength != null && readLength > 0) {
            data = readExactly(readLength, timeout, "reading the data of READ " + handle);
        }
        return new Reply(handle, error, data);
    }

    /** Reads the reply for a request sent just before, checking it answers that handle. */
    Reply expectReply(long handle) throws IOException {
        Reply r = readReply();
        assertEquals(handle, r.handle(), String.format("reply handle 0x%x, expected 0x%x", r.handle(), handle));
        return r;
    }

    /**
     * Waits for the server to close the connection: true when it did (EOF or reset) within the
     * timeout. Bytes that arrive before are counted into {@code received} (may be null).
     */
    boolean closedByServerWithin(Duration timeout, long[] received) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(64 * 1024);
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            buf.clear();
            int r;
            try {
                r = ch.read(buf);
            } catch (IOException e) { // connection reset
                return true;
            }
            if (r < 0) {
                return true;
            }
            if (r > 0) {
                if (received != null) {
                    received[0] += r;
                }
                continue;
            }
            long left = (deadline - System.nanoTime()) / 1_000_000;
            if (left <= 0) {
                return false;
            }
            readSelector.select(left);
            readSelector.selectedKeys().clear();
        }
    }

    @Override
    public void close() {
        try {
            readSelector.close();
            writeSelector.close();
        } catch (IOException ignored) {
            // best effort
        }
        try {
            ch.close();
        } catch (IOException ignored) {
            // best effort
        }
    }
}
