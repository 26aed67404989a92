package io.rbdnbd.engine.server;

import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.protocol.OptionCodec;
import io.rbdnbd.engine.protocol.ProtocolException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.Optional;

/**
 * The server side of the fixed-newstyle handshake, run on the connection's own thread before
 * the transmission stream starts. Reads exactly the bytes of each option, so nothing of the
 * transmission phase is consumed here.
 */
public final class Handshake {
    private static final Logger log = LoggerFactory.getLogger(Handshake.class);

    /** What the client negotiated; {@code tls}: the connection went through STARTTLS. */
    public record Result(boolean structuredReplies, boolean baseAllocation, boolean tls) {
        public Result(boolean structuredReplies, boolean baseAllocation) {
            this(structuredReplies, baseAllocation, false);
        }
    }

    private final Export export;
    private final int maxPayload;
    private final String connection;
    private final TlsPolicy tls;

    public Handshake(Export export, int maxPayload, String connection) {
        this(export, maxPayload, connection, TlsPolicy.OFF);
    }

    public Handshake(Export export, int maxPayload, String connection, TlsPolicy tls) {
        this.export = export;
        this.maxPayload = maxPayload;
        this.connection = connection;
        this.tls = tls;
    }

    /**
     * Runs the handshake. Empty when the client ended it without entering transmission (OPT_ABORT,
     * or a probe that only listed exports and closed).
     *
     * @throws ProtocolException when the client breaks the protocol
     */
    public Optional<Result> run(InputStream rawIn, OutputStream rawOut) throws IOException {
        DataInputStream in = new DataInputStream(rawIn);
        OutputStream out = rawOut;
        boolean tlsActive = false;
        out.write(OptionCodec.greeting());
        out.flush();
        int clientFlags = in.readInt();
        int known = Nbd.CLIENT_FLAG_FIXED_NEWSTYLE | Nbd.CLIENT_FLAG_NO_ZEROES;
        if ((clientFlags & ~known) != 0) {
            throw new ProtocolException(String.format("unknown client flags 0x%x", clientFlags));
        }
        boolean noZeroes = (clientFlags & Nbd.CLIENT_FLAG_NO_ZEROES) != 0;
        boolean structured = false;
        boolean baseAllocation = false;
        long size = export.backend().size();
        int flags = export.transmissionFlags();
        while (true) {
            long magic;
            try {
                magic = in.readLong();
            } catch (java.io.EOFException e) {
                log.debug("{}: client closed during the handshake", connection);
                return Optional.empty();
            }
            if (magic != Nbd.IHAVEOPT) {
                throw new ProtocolException(String.format("bad option magic 0x%x", magic));
            }
            int option = in.readInt();
            long length = in.readInt() & 0xffffffffL;
            if (length > OptionCodec.MAX_OPTION_LENGTH) {
                if (option != Nbd.OPT_EXPORT_NAME) { // EXPORT_NAME has no error reply: the spec says close
                    send(out, OptionCodec.error(option, Nbd.REP_ERR_TOO_BIG, "option too long"));
                }
                throw new ProtocolException("option " + option + " of " + length + " bytes");
            }
            byte[] data = new byte[(int) length];
            in.readFully(data);
            if (tls.mode() == TlsPolicy.Mode.REQUIRE && !tlsActive && option != Nbd.OPT_STARTTLS
                    && option != Nbd.OPT_ABORT) {
                if (option == Nbd.OPT_EXPORT_NAME) { // no error reply exists for it: the spec says close
                    throw new ProtocolException("NBD_OPT_EXPORT_NAME without TLS, which this export requires");
                }
                send(out, OptionCodec.error(option, Nbd.REP_ERR_TLS_REQD, "this export requires TLS (NBD_OPT_STARTTLS)"));
                continue;
            }
            switch (option) {
                case Nbd.OPT_STARTTLS -> {
                    if (tls.mode() == TlsPolicy.Mode.OFF) {
                        send(out, OptionCodec.error(option, Nbd.REP_ERR_UNSUP, "TLS is not enabled on this export"));
                    } else if (length != 0) {
                        send(out, OptionCodec.error(option, Nbd.REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data"));
                    } else if (tlsActive) {
                        send(out, OptionCodec.error(option, Nbd.REP_ERR_INVALID, "TLS is already on"));
                    } else {
                        send(out, OptionCodec.ack(option));
                        TlsPolicy.Streams s = tls.upgrade().start();
                        in = new DataInputStream(s.in());
                        out = s.out();
                        tlsActive = true;
                        structured = false; // what was negotiated in plaintext does not carry over
                        baseAllocation = false;
                    }
                }
                case Nbd.OPT_EXPORT_NAME -> {
                    String name = new String(data, java.nio.charset.StandardCharsets.UTF_8);
                    if (!served(name)) { // no error reply exists for EXPORT_NAME: the spec says close
                        throw new ProtocolException("unknown export '" + printable(name) + "'");
                    }
                    out.write(OptionCodec.exportNameReply(size, flags, noZeroes));
                    out.flush();
                    return Optional.of(new Result(structured, baseAllocation, tlsActive));
                }
                case Nbd.OPT_ABORT -> {
                    send(out, OptionCodec.ack(option));
                    return Optional.empty();
                }
                case Nbd.OPT_LIST -> {
                    if (length != 0) {
                        send(out, OptionCodec.error(option, Nbd.REP_ERR_INVALID, "NBD_OPT_LIST takes no data"));
                    } else {
                        out.write(OptionCodec.server(option, export.name()));
                        send(out, OptionCodec.ack(option));
                    }
                }
                case Nbd.OPT_INFO, Nbd.OPT_GO -> {
                    OptionCodec.InfoRequest req;
                    try {
                        req = OptionCodec.parseInfoRequest(data);
                    } catch (IllegalArgumentException e) {
                        send(out, OptionCodec.error(option, Nbd.REP_ERR_INVALID, e.getMessage()));
                        continue;
                    }
                    if (!served(req.exportName())) {
                        send(out, OptionCodec.error(option, Nbd.REP_ERR_UNKNOWN,
                                "no export named '" + printable(req.exportName()) + "' here"));
                        continue;
                    }
                    out.write(OptionCodec.infoExport(option, size, flags));
                    out.write(OptionCodec.infoBlockSize(option, 1, 4096, maxPayload));
                    send(out, OptionCodec.ack(option));
                    if (option == Nbd.OPT_GO) {
                        return Optional.of(new Result(structured, baseAllocation, tlsActive));
                    }
                }
                case Nbd.OPT_STRUCTURED_REPLY -> {
                    if (length != 0) {
                        send(out, OptionCodec.error(option, Nbd.REP_ERR_INVALID, "takes no data"));
                    } else {
                        structured = true;
                        send(out, OptionCodec.ack(option));
                    }
                }
                case Nbd.OPT_LIST_META_CONTEXT, Nbd.OPT_SET_META_CONTEXT -> {
                    boolean set = option == Nbd.OPT_SET_META_CONTEXT;
                    OptionCodec.MetaContextRequest req;
                    try {
                        req = OptionCodec.parseMetaContextRequest(data);
                    } catch (IllegalArgumentException e) {
                        send(out, OptionCodec.error(option, Nbd.REP_ERR_INVALID, e.getMessage()));
                        continue;
                    }
                    if (set && !structured) {
                        send(out, OptionCodec.error(option, Nbd.REP_ERR_INVALID,
                                "structured replies must be negotiated first"));
                        continue;
                    }
                    boolean chosen = req.queries().isEmpty() && !set;
                    for (String q : req.queries()) {
                        chosen |= q.equals(Nbd.META_CONTEXT_BASE_ALLOCATION) || (!set && q.equals("base:"));
                    }
                    if (chosen) {
                        out.write(OptionCodec.metaContext(option, Nbd.BASE_ALLOCATION_CONTEXT_ID,
                                Nbd.META_CONTEXT_BASE_ALLOCATION));
                    }
                    if (set) {
                        baseAllocation = chosen;
                    }
                    send(out, OptionCodec.ack(option));
                }
                default -> send(out, OptionCodec.error(option, Nbd.REP_ERR_UNSUP, "option " + option + " not supported"));
            }
        }
    }

    /** The export's own name, or the empty name that asks for the default export (the only one here). */
    private boolean served(String name) {
        return name.isEmpty() || name.equals(export.name());
    }

    /** A client's string as it may appear in a log line: bounded, control characters escaped. */
    private static String printable(String s) {
        StringBuilder b = new StringBuilder();
        s.codePoints().limit(64).forEach(c -> {
            if (c < 0x20 || c == 0x7f) {
                b.append(String.format("\\x%02x", c));
            } else {
                b.appendCodePoint(c);
            }
        });
        return s.codePointCount(0, s.length()) > 64 ? b + "..." : b.toString();
    }

    private static void send(OutputStream out, byte[] reply) throws IOException {
        out.write(reply);
        out.flush();
    }
}
