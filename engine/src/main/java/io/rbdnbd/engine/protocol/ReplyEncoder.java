package io.rbdnbd.engine.protocol;

import org.apache.pekko.util.ByteString;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

/**
 * Turns replies into bytes. Pure. Without structured replies (the kernel, old clients) every
 * reply is a simple one. With them, READ and BLOCK_STATUS answer in structured chunks (the spec
 * forbids a simple reply to READ then, and BLOCK_STATUS has no simple form); other commands keep
 * simple replies, which the spec allows for replies without payload. READ data is appended, not
 * copied.
 */
public final class ReplyEncoder {
    private static final int MAX_ERROR_MESSAGE = 4096;

    private ReplyEncoder() {
    }

    public static ByteString encode(NbdReply r, boolean structured) {
        boolean chunked = structured && (r.command() == Nbd.CMD_READ || r.command() == Nbd.CMD_BLOCK_STATUS);
        if (!chunked) {
            ByteBuffer h = ByteBuffer.allocate(Nbd.SIMPLE_REPLY_HEADER_SIZE);
            h.putInt(Nbd.SIMPLE_REPLY_MAGIC).putInt(r.error()).putLong(r.handle());
            ByteString header = ByteString.fromArrayUnsafe(h.array());
            return r.error() == 0 && r.command() == Nbd.CMD_READ ? header.concat(r.data()) : header;
        }
        if (r.error() != 0) {
            byte[] msg = r.message().getBytes(StandardCharsets.UTF_8);
            int msgLen = Math.min(msg.length, MAX_ERROR_MESSAGE);
            ByteBuffer b = chunkHeader(Nbd.REPLY_TYPE_ERROR, r.handle(), 6 + msgLen);
            b.putInt(r.error()).putShort((short) msgLen).put(msg, 0, msgLen);
            return ByteString.fromArrayUnsafe(b.array());
        }
        if (r.command() == Nbd.CMD_READ) {
            if (r.data().isEmpty()) {
                return ByteString.fromArrayUnsafe(chunkHeader(Nbd.REPLY_TYPE_NONE, r.handle(), 0).array());
            }
            ByteBuffer b = chunkHeader(Nbd.REPLY_TYPE_OFFSET_DATA, r.handle(), 8 + r.data().size());
            b.putLong(r.offset());
            return ByteString.fromArrayUnsafe(b.array()).concat(r.data());
        }
        ByteBuffer b = chunkHeader(Nbd.REPLY_TYPE_BLOCK_STATUS, r.handle(), 4 + 8 * r.extents().size());
        b.putInt(Nbd.BASE_ALLOCATION_CONTEXT_ID);
        for (NbdReply.BlockDescriptor e : r.extents()) {
            b.putInt((int) e.length()).putInt(e.flags());
        }
        return ByteString.fromArrayUnsafe(b.array());
    }

    /**
     * A buffer holding the 20-byte header of a final (DONE) chunk, sized for the header plus the
     * given payload length (or just the header for OFFSET_DATA, whose data is appended).
     */
    private static ByteBuffer chunkHeader(int type, long handle, int payloadLength) {
        int inline = type == Nbd.REPLY_TYPE_OFFSET_DATA ? 8 : payloadLength;
        ByteBuffer b = ByteBuffer.allocate(Nbd.STRUCTURED_REPLY_HEADER_SIZE + inline);
        b.putInt(Nbd.STRUCTURED_REPLY_MAGIC).putShort((short) Nbd.REPLY_FLAG_DONE).putShort((short) type)
                .putLong(handle).putInt(payloadLength);
        return b;
    }
}
