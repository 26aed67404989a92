package io.rbdnbd.engine.stream;

import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.backend.Extent;
import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.protocol.NbdReply;
import io.rbdnbd.engine.protocol.NbdRequest;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Turns one request into the backend call it asks for and the call's outcome into a reply. The
 * returned stage never fails: every error, whether spotted here (range, read-only, a request the
 * decoder rejected) or raised by the backend, becomes an error reply for that request alone.
 * Every request, answered by the backend or not, is counted in the device's or export's
 * {@link IoStats} from dispatch to reply.
 */
public final class RequestDispatcher {
    private static final Logger log = LoggerFactory.getLogger(RequestDispatcher.class);

    private final BlockBackend backend;
    private final boolean readOnly;
    private final boolean blockStatus;
    private final String connection;
    private final IoStats stats;
    private final AtomicLong failures = new AtomicLong();

    /**
     * @param readOnly    the export is read-only (asked for, or the backend cannot be written)
     * @param blockStatus the client negotiated base:allocation, so BLOCK_STATUS has an answer
     * @param connection  names the connection in log lines
     * @param stats       the device's or export's statistics, shared by its connections
     */
    public RequestDispatcher(BlockBackend backend, boolean readOnly, boolean blockStatus, String connection,
                             IoStats stats) {
        this.backend = backend;
        this.readOnly = readOnly || backend.readOnly();
        this.blockStatus = blockStatus;
        this.connection = connection;
        this.stats = stats;
    }

    public CompletionStage<NbdReply> dispatch(NbdRequest r) {
        long start = stats.started();
        if (r.rejectErrno() != 0) {
            return done(answered(r, start, NbdReply.error(r, r.rejectErrno(), "invalid " + r)));
        }
        NbdReply refused = refusal(r);
        if (refused != null) {
            return done(answered(r, start, refused));
        }
        CompletionStage<NbdReply> call;
        try {
            call = call(r);
        } catch (RuntimeException e) { // a backend that throws instead of failing the stage
            return done(failed(r, start, e));
        }
        return call.handle((reply, t) -> t == null ? answered(r, start, reply) : failed(r, start, t));
    }

    /** Counts a reply made without a backend failure (its error, if any, is already an NBD one). */
    private NbdReply answered(NbdRequest r, long start, NbdReply reply) {
        stats.completed(r.type(), r.length(), reply.error(), start);
        return reply;
    }

    /** The error reply a well-formed request gets without reaching the backend, or null. */
    private NbdReply refusal(NbdRequest r) {
        boolean writes = r.type() == Nbd.CMD_WRITE || r.type() == Nbd.CMD_TRIM || r.type() == Nbd.CMD_WRITE_ZEROES;
        if (writes && readOnly) {
            return NbdReply.error(r, Nbd.EPERM, "export is read-only");
        }
        if (r.type() == Nbd.CMD_FLUSH) {
            return null;
        }
        if (r.type() == Nbd.CMD_BLOCK_STATUS && !blockStatus) {
            return NbdReply.error(r, Nbd.EINVAL, "BLOCK_STATUS without base:allocation negotiated");
        }
        long size = backend.size();
        if (r.offset() < 0 || r.offset() > size || r.length() > size - r.offset()) {
            int errno = r.type() == Nbd.CMD_WRITE || r.type() == Nbd.CMD_WRITE_ZEROES ? Nbd.ENOSPC : Nbd.EINVAL;
            return NbdReply.error(r, errno, Nbd.commandName(r.type()) + " beyond the end of the export (" + size + " bytes)");
        }
        if (r.type() == Nbd.CMD_BLOCK_STATUS && r.length() == 0) {
            return NbdReply.error(r, Nbd.EINVAL, "BLOCK_STATUS of an empty range");
        }
        return null;
    }

    private CompletionStage<NbdReply> call(NbdRequest r) {
        boolean fua = r.hasFlag(Nbd.CMD_FLAG_FUA);
        return switch (r.type()) {
            case Nbd.CMD_READ -> r.length() == 0
                    ? done(NbdReply.data(r, r.payload()))
                    : backend.read(r.offset(), (int) r.length()).thenApply(data -> NbdReply.data(r, data));
            case Nbd.CMD_WRITE -> r.length() == 0
                    ? done(NbdReply.ok(r))
                    : backend.write(r.offset(), r.payload(), fua).thenApply(v -> NbdReply.ok(r));
            case Nbd.CMD_FLUSH -> backend.flush().thenApply(v -> NbdReply.ok(r));
            case Nbd.CMD_TRIM -> r.length() == 0
                    ? done(NbdReply.ok(r))
                    : backend.trim(r.offset(), r.length(), fua).thenApply(v -> NbdReply.ok(r));
            case Nbd.CMD_WRITE_ZEROES -> r.length() == 0
                    ? done(NbdReply.ok(r))
                    : backend.writeZeroes(r.offset(), r.length(), r.hasFlag(Nbd.CMD_FLAG_NO_HOLE), fua)
                        .thenApply(v -> NbdReply.ok(r));
            case Nbd.CMD_CACHE -> r.length() == 0
                    ? done(NbdReply.ok(r))
                    : backend.cache(r.offset(), r.length()).thenApply(v -> NbdReply.ok(r));
            case Nbd.CMD_BLOCK_STATUS -> backend.blockStatus(r.offset(), r.length())
                    .thenApply(extents -> NbdReply.extents(r, descriptors(r.hasFlag(Nbd.CMD_FLAG_REQ_ONE) && extents.size() > 1
                            ? extents.subList(0, 1) : extents)));
            default -> done(NbdReply.error(r, Nbd.EINVAL, "unsupported command")); // decoder rejects these first
        };
    }

    /** The backend's extents as the reply's descriptors: the flags are the same bits (see {@link Extent}). */
    private static List<NbdReply.BlockDescriptor> descriptors(List<Extent> extents) {
        List<NbdReply.BlockDescriptor> out = new ArrayList<>(extents.size());
        for (Extent e : extents) {
            out.add(new NbdReply.BlockDescriptor(e.length(), e.flags()));
        }
        return out;
    }

    private NbdReply failed(NbdRequest r, long start, Throwable t) {
        Throwable cause = BackendException.unwrap(t);
        int errno = cause instanceof BackendException be ? be.errno() : Nbd.EIO;
        stats.completed(r.type(), r.length(), errno, start); // the backend's errno, not the folded wire one
        long n = failures.incrementAndGet();
        if (Long.bitCount(n) == 1) { // 1st, 2nd, 4th, 8th ...: a failing image does not flood the log
            log.warn("{}: {} failed with errno {} (failure #{} on this connection): {}", connection, r, errno, n,
                    cause.toString());
        }
        return NbdReply.error(r, Nbd.wireError(errno), String.valueOf(cause.getMessage()));
    }

    private static CompletionStage<NbdReply> done(NbdReply reply) {
        return CompletableFuture.completedFuture(reply);
    }
}
