package io.rbdnbd.engine.protocol;

import org.apache.pekko.stream.Attributes;
import org.apache.pekko.stream.FlowShape;
import org.apache.pekko.stream.Inlet;
import org.apache.pekko.stream.Outlet;
import org.apache.pekko.stream.stage.AbstractInHandler;
import org.apache.pekko.stream.stage.AbstractOutHandler;
import org.apache.pekko.stream.stage.GraphStage;
import org.apache.pekko.stream.stage.GraphStageLogic;
import org.apache.pekko.util.ByteString;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Frames the transmission phase's byte stream into {@link NbdRequest}s. WRITE payloads are slices
 * of the received chunks, never copied here.
 *
 * <p>A request the connection can carry on after (unknown command, a flag the command does not
 * take, a READ longer than the limit) is emitted with its {@code rejectErrno} set. Bytes that
 * cannot be a request (bad magic) or a WRITE payload over the limit leave no way to find the next
 * request: the stage logs one line saying why and completes, so requests already in flight still
 * get their replies before the connection closes. So does NBD_CMD_DISC, which is not emitted.
 */
public final class RequestDecoder extends GraphStage<FlowShape<ByteString, NbdRequest>> {
    private static final Logger log = LoggerFactory.getLogger(RequestDecoder.class);

    private static final int KNOWN_FLAGS = Nbd.CMD_FLAG_FUA | Nbd.CMD_FLAG_NO_HOLE | Nbd.CMD_FLAG_DF
            | Nbd.CMD_FLAG_REQ_ONE | Nbd.CMD_FLAG_FAST_ZERO;

    private final Inlet<ByteString> in = Inlet.create("RequestDecoder.in");
    private final Outlet<NbdRequest> out = Outlet.create("RequestDecoder.out");
    private final FlowShape<ByteString, NbdRequest> shape = FlowShape.of(in, out);
    private final int maxPayload;
    private final String connection;

    /**
     * @param maxPayload largest READ or WRITE length accepted (the advertised maximum block size)
     * @param connection names the connection in the log line that explains a protocol failure
     */
    public RequestDecoder(int maxPayload, String connection) {
        this.maxPayload = maxPayload;
        this.connection = connection;
    }

    /**
     * The errno a request with this header gets before it reaches a backend, or 0 when it is well
     * formed. Pure, so the whole table of commands and flags is tested directly.
     */
    public static int validate(int type, int flags, long length, int maxPayload) {
        if ((flags & ~KNOWN_FLAGS) != 0) {
            return Nbd.EINVAL;
        }
        int allowed = Nbd.CMD_FLAG_FUA; // FUA is valid (possibly a no-op) on every command
        switch (type) {
            case Nbd.CMD_READ -> {
                allowed |= Nbd.CMD_FLAG_DF;
                if (length > maxPayload) {
                    return Nbd.EINVAL;
                }
            }
            case Nbd.CMD_WRITE, Nbd.CMD_FLUSH, Nbd.CMD_TRIM, Nbd.CMD_CACHE, Nbd.CMD_DISC -> {
            }
            case Nbd.CMD_WRITE_ZEROES -> allowed |= Nbd.CMD_FLAG_NO_HOLE | Nbd.CMD_FLAG_FAST_ZERO;
            case Nbd.CMD_BLOCK_STATUS -> allowed |= Nbd.CMD_FLAG_REQ_ONE;
            default -> {
                return Nbd.EINVAL;
            }
        }
        return (flags & ~allowed) != 0 ? Nbd.EINVAL : 0;
    }

    @Override
    public FlowShape<ByteString, NbdRequest> shape() {
        return shape;
    }

    @Override
    public GraphStageLogic createLogic(Attributes inheritedAttributes) {
        return new GraphStageLogic(shape) {
            private ByteString buffer = ByteString.emptyByteString();
            /** Header of the WRITE whose payload is still arriving, or null. */
            private ByteBuffer pendingHeader;

            {
                setHandler(in, new AbstractInHandler() {
                    @Override
                    public void onPush() {
                        buffer = buffer.concat(grab(in));
                        emitOrPull();
                    }

                    @Override
                    public void onUpstreamFinish() {
                        if (isAvailable(out)) { // otherwise the next pull emits what is buffered, then completes
                            emitOrPull();
                        }
                    }
                });
                setHandler(out, new AbstractOutHandler() {
                    @Override
                    public void onPull() {
                        emitOrPull();
                    }
                });
            }

            private void emitOrPull() {
                NbdRequest r = parseOne();
                if (isClosed(out)) {
                    return; // parseOne ended the stage (DISC or a protocol failure)
                }
                if (r != null) {
                    push(out, r);
                } else if (isClosed(in)) {
                    if (!buffer.isEmpty() || pendingHeader != null) {
                        log.info("{}: peer closed the connection inside a request ({} bytes left unparsed)",
                                connection, buffer.size() + (pendingHeader != null ? Nbd.REQUEST_HEADER_SIZE : 0));
                    }
                    completeStage();
                } else if (!hasBeenPulled(in)) {
                    pull(in);
                }
            }

            /** The next complete request in the buffer, or null when more bytes are needed. */
            private NbdRequest parseOne() {
                while (!isClosed(out)) {
                    if (pendingHeader == null) {
                        if (buffer.size() < Nbd.REQUEST_HEADER_SIZE) {
                            return null;
                        }
                        ByteBuffer h = ByteBuffer.wrap(buffer.take(Nbd.REQUEST_HEADER_SIZE).toArray())
                                .order(ByteOrder.BIG_ENDIAN);
                        buffer = buffer.drop(Nbd.REQUEST_HEADER_SIZE);
                        int magic = h.getInt(0);
                        if (magic != Nbd.REQUEST_MAGIC) {
                            fail(String.format("bad request magic 0x%08x (expected 0x%08x)", magic, Nbd.REQUEST_MAGIC));
                            return null;
                        }
                        int flags = h.getShort(4) & 0xffff;
                        int type = h.getShort(6) & 0xffff;
                        long length = h.getInt(24) & 0xffffffffL;
                        if (type == Nbd.CMD_WRITE) {
                            if (length > maxPayload) {
                                fail("WRITE of " + length + " bytes exceeds the maximum payload of " + maxPayload);
                                return null;
                            }
                            pendingHeader = h;
                            continue;
                        }
                        if (type == Nbd.CMD_DISC) {
                            log.debug("{}: client sent NBD_CMD_DISC", connection);
                            buffer = ByteString.emptyByteString();
                            completeStage(); // in-flight requests still get their replies downstream
                            return null;
                        }
                        return new NbdRequest(type, flags, h.getLong(8), h.getLong(16), length,
                                ByteString.emptyByteString(), validate(type, flags, length, maxPayload));
                    }
                    ByteBuffer h = pendingHeader;
                    int length = h.getInt(24);
                    if (buffer.size() < length) {
                        return null;
                    }
                    ByteString payload = buffer.take(length);
                    buffer = buffer.drop(length);
                    pendingHeader = null;
                    int flags = h.getShort(4) & 0xffff;
                    return new NbdRequest(Nbd.CMD_WRITE, flags, h.getLong(8), h.getLong(16), length, payload,
                            validate(Nbd.CMD_WRITE, flags, length, maxPayload));
                }
                return null;
            }

            private void fail(String why) {
                log.warn("{}: closing the connection: {}", connection, why);
                buffer = ByteString.emptyByteString();
                completeStage();
            }
        };
    }
}
