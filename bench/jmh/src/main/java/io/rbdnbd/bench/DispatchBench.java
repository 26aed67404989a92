package io.rbdnbd.bench;

import io.rbdnbd.engine.backend.MemoryBackend;
import io.rbdnbd.engine.protocol.NbdReply;
import io.rbdnbd.engine.protocol.NbdRequest;
import io.rbdnbd.engine.stream.IoStats;
import io.rbdnbd.engine.stream.RequestDispatcher;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

import java.util.concurrent.TimeUnit;

/**
 * RequestDispatcher over a MemoryBackend, in ns per request: range checks, the backend call (a
 * 4 KiB copy in or out of the heap image) and the reply, for 5,000 WRITEs and 5,000 READs at
 * random offsets of a fully written 256 MiB image. No stream: the stages complete at once.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class DispatchBench {
    static final int PAIRS = 5_000;
    static final long IMAGE = 256L << 20;

    private RequestDispatcher dispatcher;
    private NbdRequest[] requests;

    @Setup(Level.Trial)
    public void setUp() {
        MemoryBackend backend = TransmissionFlowBench.filledImage(IMAGE);
        dispatcher = new RequestDispatcher(backend, false, false, "bench", new IoStats());
        requests = Requests.decoded(PAIRS, IMAGE, 42).toArray(NbdRequest[]::new);
    }

    /** Reply data bytes plus errors, so nothing is optimized away (and a failing request shows). */
    @Benchmark
    @OperationsPerInvocation(2 * PAIRS)
    public long dispatch() {
        long n = 0;
        for (NbdRequest r : requests) {
            NbdReply reply = dispatcher.dispatch(r).toCompletableFuture().join();
            n += reply.data().size() + ((long) reply.error() << 32);
        }
        return n;
    }
}
