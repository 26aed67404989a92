package io.rbdnbd.engine.stream;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;

import java.time.Duration;

/** The {@code rbdnbd.engine} section of the configuration (documented in reference.conf). */
public record EngineSettings(int iodepth, long maxInFlightBytes, long maxInFlightBytesPerConnection, int maxPayload,
                             int replyBatchBytes,
                             int socketReadBytes, Duration payloadTimeout, Duration badClientLogInterval,
                             long drainTimeoutMillis, String socketIoDispatcher, String fileIoDispatcher,
                             long heapBase, int fileIoThreads) {

    public static EngineSettings from(Config root) {
        Config c = root.getConfig("rbdnbd.engine");
        EngineSettings s = new EngineSettings(
                c.getInt("iodepth"),
                c.getBytes("max-in-flight-bytes"),
                c.getBytes("max-in-flight-bytes-per-connection"),
                Math.toIntExact(c.getBytes("max-payload")),
                Math.toIntExact(c.getBytes("reply-batch-bytes")),
                Math.toIntExact(c.getBytes("socket-read-bytes")),
                c.getDuration("payload-timeout"),
                c.getDuration("bad-client-log-interval"),
                c.getDuration("drain-timeout").toMillis(),
                c.getString("socket-io-dispatcher"),
                c.getString("file-io-dispatcher"),
                c.getBytes("heap-base"),
                fileIoThreads(root, c.getString("file-io-dispatcher")));
        require(c, "iodepth", s.iodepth >= 1 && s.iodepth <= 65536, "must be 1..65536, is " + s.iodepth);
        require(c, "max-in-flight-bytes", s.maxInFlightBytes >= 1, "must be positive");
        require(c, "max-in-flight-bytes-per-connection", s.maxInFlightBytesPerConnection >= 1, "must be positive");
        require(c, "max-payload", s.maxPayload >= 4096 && s.maxPayload <= (32 << 20),
                "must be 4 KiB..32 MiB, is " + s.maxPayload);
        require(c, "reply-batch-bytes", s.replyBatchBytes >= 1, "must be positive");
        require(c, "socket-read-bytes", s.socketReadBytes >= 4096, "must be at least 4 KiB");
        require(c, "payload-timeout", !s.payloadTimeout.isNegative(), "must not be negative");
        require(c, "heap-base", s.heapBase >= 0, "must not be negative");
        require(c, "bad-client-log-interval", !s.badClientLogInterval.isNegative(), "must not be negative");
        return s;
    }

    /** Threads of the file backend's dispatcher (each holds a direct buffer): its fixed pool size. */
    private static int fileIoThreads(Config root, String dispatcher) {
        String key = dispatcher + ".thread-pool-executor.fixed-pool-size";
        return root.hasPath(key) ? root.getInt(key) : 16;
    }

    /** These settings with some values replaced, e.g. {@code "iodepth", 8} (tests, benchmarks). */
    public static EngineSettings with(Object... keysAndValues) {
        java.util.Map<String, Object> m = new java.util.HashMap<>();
        for (int i = 0; i < keysAndValues.length; i += 2) {
            m.put("rbdnbd.engine." + keysAndValues[i], keysAndValues[i + 1]);
        }
        return from(com.typesafe.config.ConfigFactory.parseMap(m).withFallback(com.typesafe.config.ConfigFactory.load()));
    }

    /** @throws ConfigException.BadValue naming the file and line the value came from */
    private static void require(Config c, String key, boolean ok, String message) {
        if (!ok) {
            throw new ConfigException.BadValue(c.getValue(key).origin(), "rbdnbd.engine." + key, message);
        }
    }
}
