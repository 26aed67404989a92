package io.rbdnbd.engine.stream;

import org.apache.pekko.Done;
import org.apache.pekko.NotUsed;
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
 * of the kernel's socketpair). Two islands, both on the socket-io dispatcher: the reader, which
 * blocks in read(2) and must never hold up replies; and the flow fused with the writer, so a
 * finished request is encoded and written by one thread without further hand-offs. A write that
 * blocks because the peer is not reading stalls only that connection, which is backpressure.
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
        String io = settings.socketIoDispatcher();
        return StreamConverters.fromInputStream(() -> in, settings.socketReadBytes())
                .async(io)
                .toMat(flow.toMat(StreamConverters.fromOutputStream(() -> out, true), Keep.right()).async(io),
                        Keep.right())
                .run(mat)
                .thenApply(ioResult -> Done.getInstance());
    }
}
