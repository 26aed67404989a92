package io.rbdnbd.engine.stream;

import com.typesafe.config.Config;

/** The {@code rbdnbd.engine} section of the configuration (documented in reference.conf). */
public record EngineSettings(int iodepth, long maxInFlightBytes, int maxPayload, int replyBatchBytes,
                             int socketReadBytes, long drainTimeoutMillis, String socketIoDispatcher,
                             String fileIoDispatcher) {

    public static EngineSettings from(Config root) {
        Config c = root.getConfig("rbdnbd.engine");
        EngineSettings s = new EngineSettings(
                c.getInt("iodepth"),
                c.getBytes("max-in-flight-bytes"),
                Math.toIntExact(c.getBytes("max-payload")),
                Math.toIntExact(c.getBytes("reply-batch-bytes")),
                Math.toIntExact(c.getBytes("socket-read-bytes")),
                c.getDuration("drain-timeout").toMillis(),
                c.getString("socket-io-dispatcher"),
                c.getString("file-io-dispatcher"));
        s.check();
        return s;
    }

    private void check() {
        require(iodepth >= 1 && iodepth <= 65536, "rbdnbd.engine.iodepth must be 1..65536, is " + iodepth);
        require(maxInFlightBytes >= 1, "rbdnbd.engine.max-in-flight-bytes must be positive");
        require(maxPayload >= 4096 && maxPayload <= (32 << 20),
                "rbdnbd.engine.max-payload must be 4 KiB..32 MiB, is " + maxPayload);
        require(replyBatchBytes >= 1, "rbdnbd.engine.reply-batch-bytes must be positive");
        require(socketReadBytes >= 4096, "rbdnbd.engine.socket-read-bytes must be at least 4 KiB");
    }

    private static void require(boolean ok, String message) {
        if (!ok) {
            throw new IllegalArgumentException(message);
        }
    }
}
