package io.rbdnbd.engine.stream;

import org.apache.pekko.Done;
import org.apache.pekko.NotUsed;
import org.apache.pekko.stream.ActorAttributes;
import org.apache.pekko.stream.Attributes;
import org.apache.pekko.stream.Materializer;
import org.apache.pekko.stream.javadsl.Flow;
import org.apache.pekko.stream.javadsl.Keep;
import org.apache.pekko.stream.javadsl.StreamConverters;
import org.apache.pekko.util.ByteString;

import java.io.InputStream;
import java.io.OutputStream;
import java.util.concurrent.CompletionStage;

/**
 * Runs a transmission flow between a blocking byte source and sink (a socket, or the daemon's end
 * of the kernel's socketpair). Reading and writing each happen on a thread of the socket-io
 * dispatcher, behind async boundaries, so a blocked read never holds up replies.
 */
public final class ByteStreams {
    private ByteStreams() {
    }

    /**
     * Materializes {@code in → flow → out}. The stage completes when the flow has completed and
     * every reply is written, or fails with the I/O error that ended it.
     */
    public static CompletionStage<Done> run(Materializer mat, EngineSettings settings, InputStream in, OutputStream out,
                                            Flow<ByteString, ByteString, NotUsed> flow) {
        Attributes io = ActorAttributes.dispatcher(settings.socketIoDispatcher());
        return StreamConverters.fromInputStream(() -> in, settings.socketReadBytes())
                .withAttributes(io)
                .async()
                .via(flow)
                .async()
                .toMat(StreamConverters.fromOutputStream(() -> out, true)
                        .withAttributes(io.and(Attributes.inputBuffer(1, 1))), Keep.right())
                .run(mat)
                .thenApply(ioResult -> Done.getInstance());
    }
}
