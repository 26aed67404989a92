package io.rbdnbd.engine.stream;

import com.typesafe.config.Config;
import org.apache.pekko.dispatch.DispatcherPrerequisites;
import org.apache.pekko.dispatch.ExecutorServiceConfigurator;
import org.apache.pekko.dispatch.ExecutorServiceFactory;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * An executor for dispatchers whose tasks block (socket reads that wait for the peer, NBD_DO_IT):
 * a thread per task in progress, reusing idle threads, ending them after {@code keep-alive-time}
 * idle, up to {@code max-threads}. Pekko's thread-pool-executor cannot do this: below its core
 * size it starts a new thread for every task even when others are idle (ruinous where thread
 * creation is slow), and above it tasks queue behind blocked threads.
 *
 * <p>Configured as {@code executor = "io.rbdnbd.engine.stream.ElasticThreadPoolConfigurator"}
 * with an {@code elastic-thread-pool { max-threads, keep-alive-time }} section.
 */
public final class ElasticThreadPoolConfigurator extends ExecutorServiceConfigurator {
    private final int maxThreads;
    private final long keepAliveMillis;

    public ElasticThreadPoolConfigurator(Config config, DispatcherPrerequisites prerequisites) {
        super(config, prerequisites);
        Config c = config.getConfig("elastic-thread-pool");
        this.maxThreads = c.getInt("max-threads");
        this.keepAliveMillis = c.getDuration("keep-alive-time").toMillis();
    }

    @Override
    public ExecutorServiceFactory createExecutorServiceFactory(String id, ThreadFactory threadFactory) {
        return () -> new ThreadPoolExecutor(0, maxThreads, keepAliveMillis, TimeUnit.MILLISECONDS,
                new SynchronousQueue<>(), threadFactory, (task, pool) -> {
                    throw new java.util.concurrent.RejectedExecutionException(id + ": all " + maxThreads
                            + " threads are blocked; raise elastic-thread-pool.max-threads");
                });
    }
}
