package io.rbdnbd.engine.stream;

import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.protocol.BadClientLog;
import io.rbdnbd.engine.protocol.ReplyEncoder;
import io.rbdnbd.engine.protocol.RequestDecoder;
import org.apache.pekko.NotUsed;
import org.apache.pekko.stream.javadsl.Flow;
import org.apache.pekko.util.ByteString;

/**
 * The transmission phase of one connection, kernel or network alike: bytes in → framing (each
 * request's bytes admitted against the budget before its payload is read) → at most
 * {@code iodepth} requests in flight on the backend → replies in completion order → bytes out,
 * whose budget share is given back once written. Completes once the request stream has ended (EOF, DISC, or a
 * protocol error) and every request in flight has been answered.
 */
public final class TransmissionFlow {
    private TransmissionFlow() {
    }

    /**
     * @param structured  the client negotiated structured replies
     * @param blockStatus the client negotiated the base:allocation meta context
     * @param readOnly   the export refuses writes (EPERM)
     * @param budget     in-flight bytes, shared by every connection of the device or export; this
     *                   connection takes at most {@link EngineSettings#maxInFlightBytesPerConnection}
     * @param stats      I/O statistics, shared likewise
     * @param connection names the connection in log lines
     * @param badClients where the line saying why a connection is closed goes
     * @return replies, each to be written and then {@link Outbound#sent() marked sent}
     */
    public static Flow<ByteString, Outbound, NotUsed> create(BlockBackend backend, EngineSettings settings,
                                                             boolean structured, boolean blockStatus, boolean readOnly,
                                                             InFlightBudget budget, IoStats stats, String connection,
                                                             BadClientLog badClients) {
        RequestDispatcher dispatcher = new RequestDispatcher(backend, readOnly, blockStatus, connection, stats);
        InFlightBudget.Account account = budget.account(settings.maxInFlightBytesPerConnection());
        return Flow.of(ByteString.class)
                .via(new RequestDecoder(settings.maxPayload(), settings.payloadTimeout(), connection, account, badClients))
                .mapAsyncUnordered(settings.iodepth(), dispatcher::dispatch)
                .map(reply -> new Outbound(ReplyEncoder.encode(reply, structured), reply.weight(), account))
                .batchWeighted(settings.replyBatchBytes(), o -> (long) o.bytes().size(), o -> o, Outbound::concat)
                .watchTermination((notUsed, done) -> {
                    done.whenComplete((d, t) -> account.close());
                    return notUsed;
                });
    }
}
