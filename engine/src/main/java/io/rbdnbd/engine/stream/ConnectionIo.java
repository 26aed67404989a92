package io.rbdnbd.engine.stream;

import org.apache.pekko.Done;
import org.apache.pekko.NotUsed;
import org.apache.pekko.stream.Attributes;
import org.apache.pekko.stream.Inlet;
import org.apache.pekko.stream.Materializer;
import org.apache.pekko.stream.Outlet;
import org.apache.pekko.stream.SinkShape;
import org.apache.pekko.stream.SourceShape;
import org.apache.pekko.stream.javadsl.Flow;
import org.apache.pekko.stream.javadsl.Keep;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.stage.AbstractInHandler;
import org.apache.pekko.stream.stage.AbstractOutHandler;
import org.apache.pekko.stream.stage.GraphStage;
import org.apache.pekko.stream.stage.GraphStageLogic;
import org.apache.pekko.stream.stage.GraphStageWithMaterializedValue;
import org.apache.pekko.util.ByteString;
import scala.Tuple2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;

/**
 * Runs a transmission flow on a {@link BlockingConnection}, in two islands on the socket-io
 * dispatcher: the reader, which blocks in read(2) and must never hold up replies; and the flow
 * fused with the writer, so a finished request is encoded and written by one thread without
 * further hand-offs. A write that blocks because the peer is not reading stalls only that
 * connection, which is backpressure.
 *
 * <p>Copies: a large read hands its buffer to the stream as is (WRITE payloads are slices of it);
 * replies go out with one gathering write.
 */
public final class ConnectionIo {
    /**
     * Chunks read ahead of the framing stage (the buffer between the two islands; Pekko's default is
     * 16). Bytes not yet framed are not admitted against any budget, so this and socket-read-bytes
     * bound them: a connection holds at most (READ_AHEAD + 2) * socket-read-bytes of them.
     */
    static final int READ_AHEAD = 2;

    private ConnectionIo() {
    }

    /**
     * Materializes {@code connection → flow → connection}. The stage completes when the flow has
     * completed and every reply is written, or fails with the I/O error that ended it.
     */
    public static CompletionStage<Done> run(Materializer mat, EngineSettings settings, BlockingConnection connection,
                                            Flow<ByteString, Outbound, NotUsed> flow) {
        String io = settings.socketIoDispatcher();
        return Source.fromGraph(new Reader(connection, settings.socketReadBytes()))
                .async(io)
                .toMat(flow.toMat(Sink.fromGraph(new Writer(connection)), Keep.right()).async(io), Keep.right())
                .addAttributes(Attributes.inputBuffer(READ_AHEAD, READ_AHEAD))
                .run(mat);
    }

    /** Emits what each blocking read returns. */
    static final class Reader extends GraphStage<SourceShape<ByteString>> {
        /** Reads that fill less than this are copied out so the big buffer can be reused. */
        private static final int HAND_OVER = 32 * 1024;
        private final Outlet<ByteString> out = Outlet.create("ConnectionIo.Reader.out");
        private final SourceShape<ByteString> shape = SourceShape.of(out);
        private final BlockingConnection connection;
        private final int readBytes;

        Reader(BlockingConnection connection, int readBytes) {
            this.connection = connection;
            this.readBytes = readBytes;
        }

        @Override
        public SourceShape<ByteString> shape() {
            return shape;
        }

        @Override
        public GraphStageLogic createLogic(Attributes attrs) {
            return new GraphStageLogic(shape) {
                private byte[] buf = new byte[readBytes];

                {
                    setHandler(out, new AbstractOutHandler() {
                        @Override
                        public void onPull() {
                            int n;
                            try {
                                n = connection.read(ByteBuffer.wrap(buf));
                            } catch (IOException e) {
                                failStage(e);
                                return;
                            }
                            if (n < 0) {
                                completeStage();
                            } else if (n >= HAND_OVER) {
                                push(out, ByteString.fromArrayUnsafe(buf, 0, n));
                                buf = new byte[readBytes];
                            } else {
                                push(out, ByteString.fromArray(buf, 0, n));
                            }
                        }

                        @Override
                        public void onDownstreamFinish(Throwable cause) {
                            try {
                                connection.shutdownInput();
                            } catch (IOException ignored) {
                                // the connection is going away anyway
                            }
                            completeStage();
                        }
                    });
                }
            };
        }
    }

    /** Writes each element with one gathering write, then gives back its budget; materializes completion. */
    static final class Writer extends GraphStageWithMaterializedValue<SinkShape<Outbound>, CompletionStage<Done>> {
        private final Inlet<Outbound> in = Inlet.create("ConnectionIo.Writer.in");
        private final SinkShape<Outbound> shape = SinkShape.of(in);
        private final BlockingConnection connection;

        Writer(BlockingConnection connection) {
            this.connection = connection;
        }

        @Override
        public SinkShape<Outbound> shape() {
            return shape;
        }

        @Override
        public Tuple2<GraphStageLogic, CompletionStage<Done>> createLogicAndMaterializedValue(Attributes attrs) {
            CompletableFuture<Done> done = new CompletableFuture<>();
            GraphStageLogic logic = new GraphStageLogic(shape) {
                {
                    setHandler(in, new AbstractInHandler() {
                        @Override
                        public void onPush() {
                            Outbound replies = grab(in);
                            try {
                                List<ByteBuffer> pieces = new ArrayList<>();
                                replies.bytes().getByteBuffers().forEach(pieces::add);
                                connection.write(pieces.toArray(new ByteBuffer[0]));
                                replies.sent();
                            } catch (IOException e) {
                                done.completeExceptionally(e);
                                failStage(e);
                                return;
                            }
                            pull(in);
                        }

                        @Override
                        public void onUpstreamFinish() {
                            try {
                                connection.shutdownOutput();
                            } catch (IOException ignored) {
                                // the peer may be gone; everything was written
                            }
                            done.complete(Done.getInstance());
                            completeStage();
                        }

                        @Override
                        public void onUpstreamFailure(Throwable ex) {
                            done.completeExceptionally(ex);
                            failStage(ex);
                        }
                    });
                }

                @Override
                public void preStart() {
                    pull(in);
                }

                @Override
                public void postStop() {
                    done.completeExceptionally(new IOException("connection writer stopped"));
                }
            };
            return Tuple2.apply(logic, done);
        }
    }
}
