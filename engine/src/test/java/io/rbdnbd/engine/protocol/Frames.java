package io.rbdnbd.engine.protocol;

import org.apache.pekko.util.ByteString;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/** Builds request bytes and parses reply bytes, as a client would, for tests. */
public final class Frames {
    private Frames() {
    }

    public static ByteString request(int type, int flags, long handle, long offset, long length, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(Nbd.REQUEST_HEADER_SIZE + (payload == null ? 0 : payload.length));
        b.putInt(Nbd.REQUEST_MAGIC).putShort((short) flags).putShort((short) type).putLong(handle).putLong(offset)
                .putInt((int) length);
        if (payload != null) {
            b.put(payload);
        }
        return ByteString.fromArrayUnsafe(b.array());
    }

    public static ByteString write(long handle, long offset, byte[] data) {
        return request(Nbd.CMD_WRITE, 0, handle, offset, data.length, data);
    }

    public static ByteString read(long handle, long offset, int length) {
        return request(Nbd.CMD_READ, 0, handle, offset, length, null);
    }

    /** A reply as seen by a client: simple or one structured chunk. */
    public record Reply(boolean structured, int type, int flags, long handle, int error, long offset, byte[] data,
                        List<long[]> extents) {
    }

    /**
     * Parses replies from {@code bytes}. {@code readLengths} maps handles of simple READ replies to
     * their data length (a simple reply does not say); use {@code h -> -1} where there are none.
     */
    public static List<Reply> parse(ByteString bytes, java.util.function.LongToIntFunction readLengths) {
        ByteBuffer b = bytes.asByteBuffer();
        List<Reply> out = new ArrayList<>();
        while (b.hasRemaining()) {
            int magic = b.getInt();
            if (magic == Nbd.SIMPLE_REPLY_MAGIC) {
                int error = b.getInt();
                long handle = b.getLong();
                int len = error == 0 ? Math.max(0, readLengths.applyAsInt(handle)) : 0;
                byte[] data = new byte[len];
                b.get(data);
                out.add(new Reply(false, -1, 0, handle, error, -1, data, List.of()));
            } else if (magic == Nbd.STRUCTURED_REPLY_MAGIC) {
                int flags = b.getShort() & 0xffff;
                int type = b.getShort() & 0xffff;
                long handle = b.getLong();
                int len = b.getInt();
                ByteBuffer p = b.slice();
                p.limit(len);
                b.position(b.position() + len);
                int error = 0;
                long offset = -1;
                byte[] data = new byte[0];
                List<long[]> extents = new ArrayList<>();
                if (type == Nbd.REPLY_TYPE_OFFSET_DATA) {
                    offset = p.getLong();
                    data = new byte[p.remaining()];
                    p.get(data);
                } else if (type == Nbd.REPLY_TYPE_BLOCK_STATUS) {
                    p.getInt(); // context id
                    while (p.hasRemaining()) {
                        extents.add(new long[] {p.getInt() & 0xffffffffL, p.getInt()});
                    }
                } else if (type == Nbd.REPLY_TYPE_ERROR) {
                    error = p.getInt();
                    int ml = p.getShort() & 0xffff;
                    data = new byte[ml];
                    p.get(data);
                }
                out.add(new Reply(true, type, flags, handle, error, offset, data, extents));
            } else {
                throw new AssertionError(String.format("bad reply magic 0x%08x at %d", magic, b.position() - 4));
            }
        }
        return out;
    }
}
