package io.rbdnbd.bench;

import io.rbdnbd.engine.backend.MemoryBackend;
import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.InFlightBudget;
import io.rbdnbd.engine.stream.IoStats;
import io.rbdnbd.engine.stream.Outbound;
import io.rbdnbd.engine.stream.TransmissionFlow;
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

import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The whole per-connection pipeline, bytes in to bytes out, in ns per request: TransmissionFlow
 * (decode, in-flight budget, dispatch with the configured iodepth, encode, reply batching) over a
 * MemoryBackend, fed 5,000 4 KiB WRITEs and 5,000 4 KiB READs in socket-read-sized chunks, the
 * replies counted by a Sink.fold. Sockets are not involved (see bench/export-fio.sh for those).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class TransmissionFlowBench {
    static final int PAIRS = 5_000;
    static final int REQUESTS = 2 * PAIRS;
    static final long IMAGE = 256L << 20;

    @Param({"false", "true"})
    public boolean structured;

    private ActorSystem system;
    private EngineSettings settings;
    private InFlightBudget budget;
    private IoStats stats;
    private MemoryBackend backend;
    private List<ByteString> wire;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        system = ActorSystem.create("flow-bench");
        settings = EngineSettings.from(system.settings().config());
        budget = new InFlightBudget(settings.maxInFlightBytes());
        stats = new IoStats(); // recorded into as the daemon does: its cost is part of what is measured
        backend = filledImage(IMAGE);
        wire = Requests.wire(PAIRS, IMAGE, settings.socketReadBytes(), 42);
        long readReply = structured ? Nbd.STRUCTURED_REPLY_HEADER_SIZE + 8 + Requests.BLOCK
                : Nbd.SIMPLE_REPLY_HEADER_SIZE + Requests.BLOCK;
        long expect = PAIRS * (readReply + Nbd.SIMPLE_REPLY_HEADER_SIZE);
        long got = flow();
        if (got != expect) {
            throw new IllegalStateException("flow answered " + got + " bytes, expected " + expect);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        system.terminate();
        system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }

    /** Reply bytes produced. */
    @Benchmark
    @OperationsPerInvocation(REQUESTS)
    public long flow() throws Exception {
        return Source.from(wire)
                .via(TransmissionFlow.create(backend, settings, structured, false, false, budget, stats, "bench", new io.rbdnbd.engine.protocol.BadClientLog(java.time.Duration.ZERO)))
                .map(Outbound::sent)
                .runWith(Sink.<Long, ByteString>fold(0L, (acc, bytes) -> acc + bytes.size()), system)
                .toCompletableFuture()
                .get(1, TimeUnit.MINUTES);
    }

    /** A memory image with every chunk written, so reads copy data rather than zero-fill. */
    static MemoryBackend filledImage(long size) {
        MemoryBackend backend = new MemoryBackend(size);
        byte[] block = new byte[1 << 20];
        new java.util.Random(7).nextBytes(block);
        ByteString data = ByteString.fromArrayUnsafe(block);
        for (long off = 0; off < size; off += block.length) {
            backend.write(off, data, false).toCompletableFuture().join();
        }
        return backend;
    }
}
