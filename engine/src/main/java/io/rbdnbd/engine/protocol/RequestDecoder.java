package io.rbdnbd.engine.protocol;

import org.apache.pekko.stream.Attributes;
import org.apache.pekko.stream.FlowShape;
import org.apache.pekko.stream.Inlet;
import org.apache.pekko.stream.Outlet;
import org.apache.pekko.stream.stage.AbstractInHandler;
import org.apache.pekko.stream.stage.AbstractOutHandler;
import org.apache.pekko.stream.stage.AsyncCallback;
import org.apache.pekko.stream.stage.GraphStage;
import org.apache.pekko.stream.stage.GraphStageLogic;
import org.apache.pekko.stream.stage.TimerGraphStageLogic;
import org.apache.pekko.util.ByteString;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.nio.ByteOrder;

/**
 * Frames the transmission phase's byte stream into {@link NbdRequest}s. WRITE payloads are slices
 * of the received chunks, never copied here.
 *
 * <p>Memory is admitted before it is used: once a header is read, the bytes the request will hold
 * (a WRITE's payload, a READ's data) are taken from the {@link Admission}; while they do not fit,
 * the stage neither reads further nor emits, so the socket is not read (TCP backpressure) and a
 * client announcing large WRITEs it never finishes holds at most its admitted share, and only for
 * the payload timeout: then its connection is closed.
 *
 * <p>A request the connection can carry on after (unknown command, a flag the command does not
 * take, a READ longer than the limit) is emitted with its {@code rejectErrno} set. Bytes that
 * cannot be a request (bad magic) or a WRITE payload over the limit leave no way to find the next
 * request: the stage logs one line saying why and completes, so requests already in flight still
 * get their replies before the connection closes. That line is rate-limited per client
 * ({@link BadClientLog}). So does NBD_CMD_DISC, which is not emitted.
 */
public final class RequestDecoder extends GraphStage<FlowShape<ByteString, NbdRequest>> {
    private static final Logger log = LoggerFactory.getLogger(RequestDecoder.class);

    private static final int KNOWN_FLAGS = Nbd.CMD_FLAG_FUA | Nbd.CMD_FLAG_NO_HOLE | Nbd.CMD_FLAG_DF
            | Nbd.CMD_FLAG_REQ_ONE | Nbd.CMD_FLAG_FAST_ZERO;

    private static final String PAYLOAD_TIMER = "payload";

    private final Inlet<ByteString> in = Inlet.create("RequestDecoder.in");
    private final Outlet<NbdRequest> out = Outlet.create("RequestDecoder.out");
    private final FlowShape<ByteString, NbdRequest> shape = FlowShape.of(in, out);
    private final int maxPayload;
    private final Duration payloadTimeout;
    private final String connection;
    private final Admission admission;
    private final BadClientLog badClients;

    /**
     * @param maxPayload     largest READ or WRITE length accepted (the advertised maximum block size)
     * @param payloadTimeout how long an admitted WRITE's payload may take to arrive before the
     *                       connection is closed (its admitted bytes then go back); zero: no limit
     * @param connection     names the connection in the log line that explains a protocol failure
     * @param admission      takes each request's bytes before its payload is read or it is emitted
     * @param badClients     where the line saying why a connection is closed goes
     */
    public RequestDecoder(int maxPayload, Duration payloadTimeout, String connection, Admission admission,
                          BadClientLog badClients) {
        this.maxPayload = maxPayload;
        this.payloadTimeout = payloadTimeout;
        this.connection = connection;
        this.admission = admission;
        this.badClients = badClients;
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
        return new TimerGraphStageLogic(shape) {
            private ByteString buffer = ByteString.emptyByteString();
            /** The request whose header has been read and which is not emitted yet, or null. */
            private ByteBuffer header;
            /** Its bytes are admitted. */
            private boolean admitted;
            /** Waiting for the admission to give bytes back: neither read nor emit until then. */
            private boolean waitingForAdmission;
            private AsyncCallback<Object> admissionWake;
            /** A payload timer runs for the admitted WRITE whose payload is arriving. */
            private boolean payloadTimerRunning;

            @Override
            public void preStart() {
                admissionWake = createAsyncCallback(ignored -> {
                    if (waitingForAdmission) {
                        waitingForAdmission = false;
                        if (isAvailable(out)) {
                            emitOrPull();
                        }
                    }
                });
            }

            {
                setHandler(in, new AbstractInHandler() {
                    @Override
                    public void onPush() {
                        buffer = buffer.concat(grab(in));
                        emitOrPull();
                    }

                    @Override
                    public void onUpstreamFinish() {
                        if (isAvailable(out) && !waitingForAdmission) { // else the next pull or wake-up emits what is buffered, then completes
                            emitOrPull();
                        }
                    }
                });
                setHandler(out, new AbstractOutHandler() {
                    @Override
                    public void onPull() {
                        if (!waitingForAdmission) {
                            emitOrPull();
                        }
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
                } else if (waitingForAdmission) {
                    return; // the admission's wake-up carries on
                } else if (isClosed(in)) {
                    if (!buffer.isEmpty() || header != null) {
                        log.info("{}: peer closed the connection inside a request ({} bytes left unparsed)",
                                connection, buffer.size() + (header != null ? Nbd.REQUEST_HEADER_SIZE : 0));
                    }
                    completeStage();
                } else if (!hasBeenPulled(in)) {
                    pull(in);
                }
            }

            /** The next complete, admitted request in the buffer, or null when more bytes or budget are needed. */
            private NbdRequest parseOne() {
                if (header == null) {
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
                    int type = h.getShort(6) & 0xffff;
                    long length = h.getInt(24) & 0xffffffffL;
                    if (type == Nbd.CMD_WRITE && length > maxPayload) {
                        fail("WRITE of " + length + " bytes exceeds the maximum payload of " + maxPayload);
                        return null;
                    }
                    if (type == Nbd.CMD_DISC) {
                        log.debug("{}: client sent NBD_CMD_DISC", connection);
                        buffer = ByteString.emptyByteString();
                        completeStage(); // in-flight requests still get their replies downstream
                        return null;
                    }
                    header = h;
                    admitted = false;
                }
                int flags = header.getShort(4) & 0xffff;
                int type = header.getShort(6) & 0xffff;
                long length = header.getInt(24) & 0xffffffffL;
                int reject = validate(type, flags, length, maxPayload);
                if (!admitted) {
                    long weight = NbdRequest.weight(type, length, reject);
                    if (!admission.tryAcquire(weight)) {
                        admission.onRelease(() -> admissionWake.invoke(Boolean.TRUE));
                        if (!admission.tryAcquire(weight)) { // a release may have come before registering
                            waitingForAdmission = true;
                            return null;
                        }
                    }
                    admitted = true;
                }
                ByteString payload = ByteString.emptyByteString();
                if (type == Nbd.CMD_WRITE) {
                    if (buffer.size() < length) {
                        if (!payloadTimerRunning && !payloadTimeout.isZero()) {
                            scheduleOnce(PAYLOAD_TIMER, payloadTimeout);
                            payloadTimerRunning = true;
                        }
                        return null;
                    }
                    if (payloadTimerRunning) {
                        cancelTimer(PAYLOAD_TIMER);
                        payloadTimerRunning = false;
                    }
                    payload = buffer.take((int) length);
                    buffer = buffer.drop((int) length);
                }
                NbdRequest r = new NbdRequest(type, flags, header.getLong(8), header.getLong(16), length, payload, reject);
                header = null;
                return r;
            }

            @Override
            public void onTimer(Object key) {
                if (PAYLOAD_TIMER.equals(key) && payloadTimerRunning) {
                    fail("the payload of " + describeHeader() + " did not arrive within " + payloadTimeout.toSeconds()
                            + " s (" + buffer.size() + " bytes came)");
                }
            }

            private String describeHeader() {
                return header == null ? "a request" : Nbd.commandName(header.getShort(6) & 0xffff) + " of "
                        + (header.getInt(24) & 0xffffffffL) + " bytes";
            }

            private void fail(String why) {
                badClients.closing(connection, why);
                buffer = ByteString.emptyByteString();
                completeStage();
            }
        };
    }
}
