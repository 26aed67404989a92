package io.rbdnbd.engine.stream;

import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.protocol.ReplyEncoder;
import io.rbdnbd.engine.protocol.RequestDecoder;
import org.apache.pekko.NotUsed;
import org.apache.pekko.stream.javadsl.Flow;
import org.apache.pekko.util.ByteString;

/**
 * The transmission phase of one connection, kernel or network alike: bytes in → framing →
 * at most {@code iodepth} requests (and the budget's bytes) in flight on the backend, replies in
 * completion order → bytes out. Completes once the request stream has ended (EOF, DISC, or a
 * protocol error) and every request in flight has been answered.
 */
public final class TransmissionFlow {
    private TransmissionFlow() {
    }

    /**
     * @param structured  the client negotiated structured replies
     * @param blockStatus the client negotiated the base:allocation meta context
     * @param readOnly   the export refuses writes (EPERM)
     * @param budget     in-flight bytes, shared by every connection of the device or export
     * @param stats      I/O statistics, shared likewise
     * @param connection names the connection in log lines
     */
    public static Flow<ByteString, ByteString, NotUsed> create(BlockBackend backend, EngineSettings settings,
                                                              boolean structured, boolean blockStatus, boolean readOnly,
                                                              InFlightBudget budget, IoStats stats, String connection) {
        RequestDispatcher dispatcher = new RequestDispatcher(backend, readOnly, blockStatus, connection, stats);
        InFlightBudget.Account account = budget.account();
        return Flow.of(ByteString.class)
                .via(new RequestDecoder(settings.maxPayload(), connection))
                .via(new BudgetGate(account))
                .mapAsyncUnordered(settings.iodepth(), dispatcher::dispatch)
                .map(reply -> {
                    account.release(reply.weight());
                    return ReplyEncoder.encode(reply, structured);
                })
                .batchWeighted(settings.replyBatchBytes(), bytes -> (long) bytes.size(), bytes -> bytes, ByteString::concat)
                .watchTermination((notUsed, done) -> {
                    done.whenComplete((d, t) -> account.releaseAll());
                    return notUsed;
                });
    }
}
