package io.rbdnbd.engine.protocol;

import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.Test;

import java.util.HexFormat;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

class ReplyEncoderTest {
    private static final HexFormat HEX = HexFormat.of();

    private static NbdRequest req(int type, long handle, long offset, long length) {
        return new NbdRequest(type, 0, handle, offset, length, ByteString.emptyByteString(), 0);
    }

    private static String hex(ByteString b) {
        return HEX.formatHex(b.toArray());
    }

    @Test
    void simpleReplies() {
        // success without data: magic, error 0, handle
        assertEquals("67446698" + "00000000" + "0102030405060708",
                hex(ReplyEncoder.encode(NbdReply.ok(req(Nbd.CMD_WRITE, 0x0102030405060708L, 0, 4)), false)));
        // successful READ: header then the data
        assertEquals("67446698" + "00000000" + "0000000000000009" + "cafe",
                hex(ReplyEncoder.encode(NbdReply.data(req(Nbd.CMD_READ, 9, 0, 2), ByteString.fromArray(new byte[] {(byte) 0xca, (byte) 0xfe})), false)));
        // failed READ: no data follows
        assertEquals("67446698" + "00000005" + "0000000000000009",
                hex(ReplyEncoder.encode(NbdReply.error(req(Nbd.CMD_READ, 9, 0, 2), Nbd.EIO, "boom"), false)));
        // structured negotiated, non-READ commands keep simple replies (errors included)
        assertEquals("67446698" + "0000001c" + "0000000000000003",
                hex(ReplyEncoder.encode(NbdReply.error(req(Nbd.CMD_WRITE, 3, 0, 2), Nbd.ENOSPC, "x"), true)));
        assertEquals("67446698" + "00000000" + "0000000000000003",
                hex(ReplyEncoder.encode(NbdReply.ok(req(Nbd.CMD_FLUSH, 3, 0, 0)), true)));
    }

    @Test
    void structuredReadData() {
        // magic, flags DONE, type OFFSET_DATA, handle, length 8+2, offset, data
        assertEquals("668e33ef" + "0001" + "0001" + "0000000000000007" + "0000000a" + "0000000000001000" + "abcd",
                hex(ReplyEncoder.encode(NbdReply.data(req(Nbd.CMD_READ, 7, 4096, 2),
                        ByteString.fromArray(new byte[] {(byte) 0xab, (byte) 0xcd})), true)));
    }

    @Test
    void structuredEmptyReadIsNoneChunk() {
        assertEquals("668e33ef" + "0001" + "0000" + "0000000000000007" + "00000000",
                hex(ReplyEncoder.encode(NbdReply.data(req(Nbd.CMD_READ, 7, 0, 0), ByteString.emptyByteString()), true)));
    }

    @Test
    void structuredError() {
        // type 0x8001, length 4+2+2, error, message length, message
        assertEquals("668e33ef" + "0001" + "8001" + "0000000000000007" + "00000008" + "00000016" + "0002" + "6869",
                hex(ReplyEncoder.encode(NbdReply.error(req(Nbd.CMD_READ, 7, 0, 2), Nbd.EINVAL, "hi"), true)));
    }

    @Test
    void structuredBlockStatus() {
        // type 5, length 4 + 2*8, context id 1, (4096, data) (8192, hole|zero)
        assertEquals("668e33ef" + "0001" + "0005" + "0000000000000002" + "00000014" + "00000001"
                        + "00001000" + "00000000" + "00002000" + "00000003",
                hex(ReplyEncoder.encode(NbdReply.extents(req(Nbd.CMD_BLOCK_STATUS, 2, 0, 12288),
                        List.of(new NbdReply.BlockDescriptor(4096, 0), new NbdReply.BlockDescriptor(8192, 3))), true)));
    }

    @Test
    void roundTripThroughTheTestClientParser() {
        ByteString out = ReplyEncoder.encode(NbdReply.data(req(Nbd.CMD_READ, 5, 0, 3),
                ByteString.fromArray(new byte[] {1, 2, 3})), false);
        List<Frames.Reply> rs = Frames.parse(out, h -> 3);
        assertEquals(1, rs.size());
        assertEquals(5, rs.get(0).handle());
        assertEquals(3, rs.get(0).data().length);
    }
}
