package io.rbdnbd.engine.server;

import io.rbdnbd.engine.backend.MemoryBackend;
import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.protocol.OptionCodec;
import io.rbdnbd.engine.protocol.ProtocolException;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Drives the server handshake with scripted client bytes and checks every reply. */
class HandshakeTest {
    private static final long SIZE = 1 << 20;

    /** Client side: flags then options. */
    private static final class Script {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream();

        Script(int clientFlags) {
            put(ByteBuffer.allocate(4).putInt(clientFlags).array());
        }

        Script option(int option, byte[] data) {
            put(ByteBuffer.allocate(16 + data.length).putLong(Nbd.IHAVEOPT).putInt(option).putInt(data.length)
                    .put(data).array());
            return this;
        }

        private void put(byte[] b) {
            bytes.write(b, 0, b.length);
        }
    }

    private record OptionReply(int option, int type, byte[] data) {
    }

    private static byte[] infoRequest(String name, int... infos) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + n.length + 2 + 2 * infos.length).putInt(n.length).put(n)
                .putShort((short) infos.length);
        for (int i : infos) {
            b.putShort((short) i);
        }
        return b.array();
    }

    private static byte[] metaRequest(String name, String... queries) {
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        o.writeBytes(ByteBuffer.allocate(4).putInt(n.length).array());
        o.writeBytes(n);
        o.writeBytes(ByteBuffer.allocate(4).putInt(queries.length).array());
        for (String q : queries) {
            byte[] qb = q.getBytes(StandardCharsets.UTF_8);
            o.writeBytes(ByteBuffer.allocate(4).putInt(qb.length).array());
            o.writeBytes(qb);
        }
        return o.toByteArray();
    }

    private record Run(Optional<Handshake.Result> result, ByteBuffer out) {
    }

    private static Run run(Script s, boolean readOnly) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        Export export = new Export("disk", new MemoryBackend(SIZE), readOnly);
        Optional<Handshake.Result> r = new Handshake(export, 32 << 20, "test")
                .run(new ByteArrayInputStream(s.bytes.toByteArray()), out);
        ByteBuffer b = ByteBuffer.wrap(out.toByteArray());
        assertEquals(Nbd.NBDMAGIC, b.getLong());
        assertEquals(Nbd.IHAVEOPT, b.getLong());
        assertEquals(Nbd.HANDSHAKE_FLAG_FIXED_NEWSTYLE | Nbd.HANDSHAKE_FLAG_NO_ZEROES, b.getShort());
        return new Run(r, b);
    }

    private static List<OptionReply> replies(ByteBuffer b) {
        List<OptionReply> rs = new ArrayList<>();
        while (b.hasRemaining()) {
            assertEquals(Nbd.OPTION_REPLY_MAGIC, b.getLong());
            int opt = b.getInt();
            int type = b.getInt();
            byte[] data = new byte[b.getInt()];
            b.get(data);
            rs.add(new OptionReply(opt, type, data));
        }
        return rs;
    }

    @Test
    void goWithStructuredRepliesAndBaseAllocation() throws IOException {
        Script s = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE | Nbd.CLIENT_FLAG_NO_ZEROES)
                .option(Nbd.OPT_STRUCTURED_REPLY, new byte[0])
                .option(Nbd.OPT_SET_META_CONTEXT, metaRequest("", "base:allocation", "qemu:dirty-bitmap:x"))
                .option(Nbd.OPT_GO, infoRequest("", Nbd.INFO_BLOCK_SIZE));
        Run run = run(s, false);
        assertEquals(Optional.of(new Handshake.Result(true, true)), run.result());
        List<OptionReply> rs = replies(run.out());
        assertEquals(Nbd.REP_ACK, rs.get(0).type());
        assertEquals(Nbd.REP_META_CONTEXT, rs.get(1).type());
        ByteBuffer ctx = ByteBuffer.wrap(rs.get(1).data());
        assertEquals(Nbd.BASE_ALLOCATION_CONTEXT_ID, ctx.getInt());
        assertEquals("base:allocation", StandardCharsets.UTF_8.decode(ctx).toString());
        assertEquals(Nbd.REP_ACK, rs.get(2).type());
        ByteBuffer info = ByteBuffer.wrap(rs.get(3).data());
        assertEquals(Nbd.REP_INFO, rs.get(3).type());
        assertEquals(Nbd.INFO_EXPORT, info.getShort());
        assertEquals(SIZE, info.getLong());
        int flags = info.getShort() & 0xffff;
        assertTrue((flags & Nbd.FLAG_CAN_MULTI_CONN) != 0);
        assertTrue((flags & Nbd.FLAG_SEND_TRIM) != 0);
        assertEquals(0, flags & Nbd.FLAG_READ_ONLY);
        ByteBuffer bs = ByteBuffer.wrap(rs.get(4).data());
        assertEquals(Nbd.INFO_BLOCK_SIZE, bs.getShort());
        assertEquals(1, bs.getInt());
        assertEquals(4096, bs.getInt());
        assertEquals(32 << 20, bs.getInt());
        assertEquals(Nbd.REP_ACK, rs.get(5).type());
        assertEquals(6, rs.size());
    }

    @Test
    void exportNameWithAndWithoutZeroes() throws IOException {
        for (boolean noZeroes : new boolean[] {true, false}) {
            Script s = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE | (noZeroes ? Nbd.CLIENT_FLAG_NO_ZEROES : 0))
                    .option(Nbd.OPT_EXPORT_NAME, "disk".getBytes(StandardCharsets.UTF_8));
            Run run = run(s, true);
            assertEquals(Optional.of(new Handshake.Result(false, false)), run.result());
            assertEquals(SIZE, run.out().getLong());
            int flags = run.out().getShort() & 0xffff;
            assertTrue((flags & Nbd.FLAG_READ_ONLY) != 0);
            assertEquals(0, flags & Nbd.FLAG_SEND_TRIM);
            assertEquals(noZeroes ? 0 : 124, run.out().remaining());
        }
    }

    @Test
    void listInfoUnsupportedAndAbort() throws IOException {
        Script s = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE)
                .option(Nbd.OPT_LIST, new byte[0])
                .option(Nbd.OPT_INFO, infoRequest("disk"))
                .option(Nbd.OPT_STARTTLS, new byte[0])
                .option(99, new byte[] {1, 2, 3})
                .option(Nbd.OPT_SET_META_CONTEXT, metaRequest("", "base:allocation")) // before structured
                .option(Nbd.OPT_LIST_META_CONTEXT, metaRequest(""))
                .option(Nbd.OPT_INFO, new byte[] {0, 0})
                .option(Nbd.OPT_ABORT, new byte[0]);
        Run run = run(s, false);
        assertFalse(run.result().isPresent());
        List<OptionReply> rs = replies(run.out());
        assertEquals(Nbd.REP_SERVER, rs.get(0).type());
        assertEquals(Nbd.REP_ACK, rs.get(1).type());
        assertEquals(Nbd.REP_INFO, rs.get(2).type());
        assertEquals(Nbd.REP_INFO, rs.get(3).type());
        assertEquals(Nbd.REP_ACK, rs.get(4).type());
        assertEquals(Nbd.REP_ERR_UNSUP, rs.get(5).type());
        assertEquals(Nbd.OPT_STARTTLS, rs.get(5).option());
        assertEquals(Nbd.REP_ERR_UNSUP, rs.get(6).type());
        assertEquals(Nbd.REP_ERR_INVALID, rs.get(7).type());
        assertEquals(Nbd.REP_META_CONTEXT, rs.get(8).type()); // list with no queries lists all
        assertEquals(Nbd.REP_ACK, rs.get(9).type());
        assertEquals(Nbd.REP_ERR_INVALID, rs.get(10).type()); // truncated info request
        assertEquals(Nbd.REP_ACK, rs.get(11).type());
        assertEquals(Nbd.OPT_ABORT, rs.get(11).option());
    }

    @Test
    void clientClosingDuringOptionsIsNotAnError() throws IOException {
        assertFalse(run(new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE), false).result().isPresent());
    }

    @Test
    void badOptionMagicAndUnknownClientFlagsAreProtocolErrors() {
        Script badMagic = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE);
        badMagic.bytes.writeBytes(new byte[16]);
        assertThrows(ProtocolException.class, () -> run(badMagic, false));
        assertThrows(ProtocolException.class, () -> run(new Script(0x80), false));
    }

    @Test
    void hugeOptionIsRefused() {
        Script s = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE);
        s.bytes.writeBytes(ByteBuffer.allocate(16).putLong(Nbd.IHAVEOPT).putInt(Nbd.OPT_GO)
                .putInt(OptionCodec.MAX_OPTION_LENGTH + 1).array());
        assertThrows(ProtocolException.class, () -> run(s, false));
    }
    /** Only the export's own name or the empty name (the default export) is served. */
    @Test
    void unknownExportNamesAreRefused() throws IOException {
        Script s = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE | Nbd.CLIENT_FLAG_NO_ZEROES)
                .option(Nbd.OPT_INFO, infoRequest("nope"))
                .option(Nbd.OPT_GO, infoRequest("nope\u0001"))
                .option(Nbd.OPT_INFO, infoRequest("disk"))
                .option(Nbd.OPT_GO, infoRequest(""));
        Run run = run(s, false);
        assertTrue(run.result().isPresent());
        List<OptionReply> rs = replies(run.out());
        assertEquals(Nbd.REP_ERR_UNKNOWN, rs.get(0).type());
        assertEquals(Nbd.OPT_INFO, rs.get(0).option());
        assertEquals(Nbd.REP_ERR_UNKNOWN, rs.get(1).type());
        assertEquals(Nbd.OPT_GO, rs.get(1).option());
        assertEquals(Nbd.REP_INFO, rs.get(2).type());
        // EXPORT_NAME has no error reply: an unknown name closes the connection, with nothing sent
        Script byName = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE | Nbd.CLIENT_FLAG_NO_ZEROES)
                .option(Nbd.OPT_EXPORT_NAME, "nope".getBytes(StandardCharsets.UTF_8));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ProtocolException e = assertThrows(ProtocolException.class, () -> new Handshake(
                new Export("disk", new MemoryBackend(SIZE), false), 32 << 20, "test")
                .run(new ByteArrayInputStream(byName.bytes.toByteArray()), out));
        assertTrue(e.getMessage().contains("unknown export 'nope'"), e.getMessage());
        assertEquals(18, out.size(), "only the greeting");
    }

    /** An oversize EXPORT_NAME cannot be answered (it has no error reply): the connection closes, nothing sent. */
    @Test
    void oversizeExportNameClosesWithoutAReply() {
        Script s = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE);
        s.bytes.writeBytes(ByteBuffer.allocate(16).putLong(Nbd.IHAVEOPT).putInt(Nbd.OPT_EXPORT_NAME)
                .putInt(OptionCodec.MAX_OPTION_LENGTH + 1).array());
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        assertThrows(ProtocolException.class, () -> new Handshake(new Export("disk", new MemoryBackend(SIZE), false),
                32 << 20, "test").run(new ByteArrayInputStream(s.bytes.toByteArray()), out));
        assertEquals(18, out.size(), "only the greeting");
    }
    /** Runs a handshake whose STARTTLS "upgrade" switches to {@code afterTls} (client bytes) and a second output. */
    private static Optional<Handshake.Result> runTls(TlsPolicy.Mode mode, Script plain, Script afterTls,
                                                     ByteArrayOutputStream out, ByteArrayOutputStream tlsOut)
            throws IOException {
        int[] upgrades = {0};
        TlsPolicy policy = mode == TlsPolicy.Mode.OFF ? TlsPolicy.OFF : new TlsPolicy(mode, () -> {
            upgrades[0]++;
            return new TlsPolicy.Streams(new ByteArrayInputStream(afterTls.bytes.toByteArray()), tlsOut);
        });
        Optional<Handshake.Result> r = new Handshake(new Export("disk", new MemoryBackend(SIZE), false), 32 << 20, "test",
                policy).run(new ByteArrayInputStream(plain.bytes.toByteArray()), out);
        assertTrue(upgrades[0] <= 1);
        return r;
    }

    private static List<OptionReply> afterGreeting(ByteArrayOutputStream out) {
        ByteBuffer b = ByteBuffer.wrap(out.toByteArray());
        b.position(18);
        return replies(b);
    }

    /** require: nothing but STARTTLS and ABORT in plaintext; after STARTTLS the options go through TLS. */
    @Test
    void requireRefusesPlaintextThenServesOverTls() throws IOException {
        Script plain = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE | Nbd.CLIENT_FLAG_NO_ZEROES)
                .option(Nbd.OPT_LIST, new byte[0])
                .option(Nbd.OPT_STRUCTURED_REPLY, new byte[0])
                .option(Nbd.OPT_GO, infoRequest(""))
                .option(Nbd.OPT_STARTTLS, new byte[] {1})
                .option(Nbd.OPT_STARTTLS, new byte[0]);
        Script overTls = new Script(0);
        overTls.bytes.reset(); // no client flags again: options go on
        overTls.option(Nbd.OPT_STARTTLS, new byte[0]).option(Nbd.OPT_GO, infoRequest("disk"));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream tlsOut = new ByteArrayOutputStream();
        Optional<Handshake.Result> r = runTls(TlsPolicy.Mode.REQUIRE, plain, overTls, out, tlsOut);
        assertEquals(Optional.of(new Handshake.Result(false, false, true)), r, "structured replies asked in plaintext do not count");
        List<OptionReply> rs = afterGreeting(out);
        assertEquals(List.of(Nbd.REP_ERR_TLS_REQD, Nbd.REP_ERR_TLS_REQD, Nbd.REP_ERR_TLS_REQD, Nbd.REP_ERR_INVALID,
                Nbd.REP_ACK), rs.stream().map(OptionReply::type).toList());
        List<OptionReply> tls = replies(ByteBuffer.wrap(tlsOut.toByteArray()));
        assertEquals(Nbd.REP_ERR_INVALID, tls.get(0).type(), "STARTTLS twice");
        assertEquals(Nbd.REP_INFO, tls.get(1).type());
        assertEquals(Nbd.REP_ACK, tls.get(tls.size() - 1).type());
    }

    @Test
    void requireClosesOnAPlaintextExportName() {
        Script plain = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE).option(Nbd.OPT_EXPORT_NAME, new byte[0]);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        assertThrows(ProtocolException.class, () -> runTls(TlsPolicy.Mode.REQUIRE, plain, new Script(0), out,
                new ByteArrayOutputStream()));
        assertEquals(18, out.size(), "only the greeting");
    }

    @Test
    void onAllowsPlaintextAndOffRefusesStartTls() throws IOException {
        Script plain = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE | Nbd.CLIENT_FLAG_NO_ZEROES)
                .option(Nbd.OPT_GO, infoRequest(""));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        assertEquals(Optional.of(new Handshake.Result(false, false, false)),
                runTls(TlsPolicy.Mode.ON, plain, new Script(0), out, new ByteArrayOutputStream()));
        Script ask = new Script(Nbd.CLIENT_FLAG_FIXED_NEWSTYLE).option(Nbd.OPT_STARTTLS, new byte[0])
                .option(Nbd.OPT_ABORT, new byte[0]);
        ByteArrayOutputStream off = new ByteArrayOutputStream();
        runTls(TlsPolicy.Mode.OFF, ask, new Script(0), off, new ByteArrayOutputStream());
        assertEquals(Nbd.REP_ERR_UNSUP, afterGreeting(off).get(0).type());
    }
}
