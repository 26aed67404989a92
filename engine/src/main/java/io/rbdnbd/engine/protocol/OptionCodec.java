package io.rbdnbd.engine.protocol;

import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** Byte layouts of the fixed-newstyle handshake (server side). Pure. */
public final class OptionCodec {
    /** Longest option payload we read; the spec bounds strings at 4 KiB. */
    public static final int MAX_OPTION_LENGTH = 64 * 1024;

    private OptionCodec() {
    }

    public static byte[] greeting() {
        return ByteBuffer.allocate(18).putLong(Nbd.NBDMAGIC).putLong(Nbd.IHAVEOPT)
                .putShort((short) (Nbd.HANDSHAKE_FLAG_FIXED_NEWSTYLE | Nbd.HANDSHAKE_FLAG_NO_ZEROES)).array();
    }

    public static byte[] reply(int option, int type, byte[] data) {
        return ByteBuffer.allocate(20 + data.length).putLong(Nbd.OPTION_REPLY_MAGIC).putInt(option).putInt(type)
                .putInt(data.length).put(data).array();
    }

    public static byte[] ack(int option) {
        return reply(option, Nbd.REP_ACK, new byte[0]);
    }

    public static byte[] error(int option, int type, String message) {
        return reply(option, type, message.getBytes(StandardCharsets.UTF_8));
    }

    public static byte[] server(int option, String exportName) {
        byte[] name = exportName.getBytes(StandardCharsets.UTF_8);
        return reply(option, Nbd.REP_SERVER, ByteBuffer.allocate(4 + name.length).putInt(name.length).put(name).array());
    }

    public static byte[] infoExport(int option, long size, int flags) {
        return reply(option, Nbd.REP_INFO,
                ByteBuffer.allocate(12).putShort((short) Nbd.INFO_EXPORT).putLong(size).putShort((short) flags).array());
    }

    public static byte[] infoBlockSize(int option, int minimum, int preferred, int maximum) {
        return reply(option, Nbd.REP_INFO, ByteBuffer.allocate(14).putShort((short) Nbd.INFO_BLOCK_SIZE)
                .putInt(minimum).putInt(preferred).putInt(maximum).array());
    }

    public static byte[] metaContext(int option, int id, String name) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        return reply(option, Nbd.REP_META_CONTEXT, ByteBuffer.allocate(4 + n.length).putInt(id).put(n).array());
    }

    /** The answer to NBD_OPT_EXPORT_NAME, which has no option-reply framing. */
    public static byte[] exportNameReply(long size, int flags, boolean noZeroes) {
        return ByteBuffer.allocate(noZeroes ? 10 : 134).putLong(size).putShort((short) flags).array();
    }

    /** Payload of OPT_INFO and OPT_GO. */
    public record InfoRequest(String exportName, List<Integer> infos) {
    }

    /** Payload of OPT_LIST_META_CONTEXT and OPT_SET_META_CONTEXT. */
    public record MetaContextRequest(String exportName, List<String> queries) {
    }

    /** @throws IllegalArgumentException when the payload is not a well-formed request */
    public static InfoRequest parseInfoRequest(byte[] data) {
        try {
            ByteBuffer b = ByteBuffer.wrap(data);
            String name = string(b, b.getInt());
            int n = b.getShort() & 0xffff;
            List<Integer> infos = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                infos.add(b.getShort() & 0xffff);
            }
            requireConsumed(b);
            return new InfoRequest(name, infos);
        } catch (BufferUnderflowException e) {
            throw new IllegalArgumentException("info request truncated");
        }
    }

    /** @throws IllegalArgumentException when the payload is not a well-formed request */
    public static MetaContextRequest parseMetaContextRequest(byte[] data) {
        try {
            ByteBuffer b = ByteBuffer.wrap(data);
            String name = string(b, b.getInt());
            int n = b.getInt();
            List<String> queries = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                queries.add(string(b, b.getInt()));
            }
            requireConsumed(b);
            return new MetaContextRequest(name, queries);
        } catch (BufferUnderflowException e) {
            throw new IllegalArgumentException("meta context request truncated");
        }
    }

    private static String string(ByteBuffer b, int length) {
        if (length < 0 || length > b.remaining() || length > 4096) {
            throw new IllegalArgumentException("string length " + (length & 0xffffffffL) + " out of bounds");
        }
        byte[] s = new byte[length];
        b.get(s);
        return new String(s, StandardCharsets.UTF_8);
    }

    private static void requireConsumed(ByteBuffer b) {
        if (b.hasRemaining()) {
            throw new IllegalArgumentException(b.remaining() + " trailing bytes");
        }
    }
}
