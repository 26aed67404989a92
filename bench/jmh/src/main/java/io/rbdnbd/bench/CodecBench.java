package io.rbdnbd.bench;

import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.protocol.NbdReply;
import io.rbdnbd.engine.protocol.NbdRequest;
import io.rbdnbd.engine.protocol.ReplyEncoder;
import io.rbdnbd.engine.protocol.RequestDecoder;
import io.rbdnbd.engine.stream.EngineSettings;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.util.ByteString;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The codec alone, in ns per request. {@code decode}: RequestDecoder framing 5,000 4 KiB WRITEs
 * and 5,000 4 KiB READs that arrive in socket-read-sized chunks (one stream materialization per
 * 10,000 requests, so stream start-up is a small share). {@code encodeReplies}: ReplyEncoder on
 * the 10,000 replies (READ with 4 KiB data, WRITE ok), simple or structured.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class CodecBench {
    static final int PAIRS = 5_000;
    static final int REQUESTS = 2 * PAIRS;
    static final long IMAGE = 1L << 30;

    private ActorSystem system;
    private List<ByteString> wire;
    private int maxPayload;

    /** The replies to encode; only encodeReplies uses it, so only it runs per structured value. */
    @State(Scope.Benchmark)
    public static class Replies {
        @Param({"false", "true"})
        public boolean structured;

        NbdReply[] replies;

        @Setup(Level.Trial)
        public void setUp() {
            ByteString data = ByteString.fromArray(new byte[Requests.BLOCK]);
            replies = Requests.decoded(PAIRS, IMAGE, 42).stream()
                    .map(r -> r.type() == Nbd.CMD_READ ? NbdReply.data(r, data) : NbdReply.ok(r))
                    .toArray(NbdReply[]::new);
        }
    }

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        system = ActorSystem.create("codec-bench");
        EngineSettings settings = EngineSettings.from(system.settings().config());
        maxPayload = settings.maxPayload();
        wire = Requests.wire(PAIRS, IMAGE, settings.socketReadBytes(), 42);
        long expect = REQUESTS + (long) PAIRS * Requests.BLOCK;
        long got = decode();
        if (got != expect) {
            throw new IllegalStateException("decoder produced " + got + " (requests + payload bytes), expected " + expect);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        system.terminate();
        system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }

    /** Requests framed plus WRITE payload bytes seen, so nothing is optimized away. */
    @Benchmark
    @OperationsPerInvocation(REQUESTS)
    public long decode() throws Exception {
        return Source.from(wire)
                .via(new RequestDecoder(maxPayload, "bench", io.rbdnbd.engine.protocol.Admission.UNLIMITED))
                .runWith(Sink.<Long, NbdRequest>fold(0L, (acc, r) -> acc + 1 + r.payload().size()), system)
                .toCompletableFuture()
                .get(Duration.ofMinutes(1).toMillis(), TimeUnit.MILLISECONDS);
    }

    @Benchmark
    @OperationsPerInvocation(REQUESTS)
    public long encodeReplies(Replies s) {
        long bytes = 0;
        for (NbdReply r : s.replies) {
            bytes += ReplyEncoder.encode(r, s.structured).size();
        }
        return bytes;
    }
}
