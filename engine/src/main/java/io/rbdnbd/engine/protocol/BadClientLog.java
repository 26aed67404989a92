package io.rbdnbd.engine.protocol;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.Iterator;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Logs why a client's connection was closed (a broken handshake, a bad frame, a stalled payload)
 * at most once per client per interval, with the count of those not shown, so that a client
 * breaking the protocol in a loop cannot flood the log. A client is its connection's name less
 * the connection number: the listener, and the peer address for TCP ("tcp:0.0.0.0:10809#7 from
 * 10.0.0.5" counts as "tcp:0.0.0.0:10809 from 10.0.0.5"). At most {@link #MAX_CLIENTS} clients are
 * remembered; past that, lines of new clients share one window.
 */
public final class BadClientLog {
    static final int MAX_CLIENTS = 4096;
    private static final String OVERFLOW = "(other clients)";
    private static final Logger log = LoggerFactory.getLogger(BadClientLog.class);

    private final long intervalNanos;
    private final Map<String, Window> windows = new ConcurrentHashMap<>();

    private static final class Window {
        long start;
        long suppressed;
    }

    /** @param interval one line per client per this much time; zero logs every line */
    public BadClientLog(Duration interval) {
        this.intervalNanos = interval.toNanos();
    }

    /** Logs {@code connection: closing the connection: why}, unless its client had a line within the interval. */
    public void closing(String connection, String why) {
        String shown = line(connection, why, System.nanoTime());
        if (shown != null) {
            log.warn(shown);
        }
    }

    /** The line to log now, or null when it is suppressed. */
    String line(String connection, String why, long now) {
        String client = client(connection);
        if (!windows.containsKey(client) && windows.size() >= MAX_CLIENTS) {
            expire(now);
            if (windows.size() >= MAX_CLIENTS) {
                client = OVERFLOW;
            }
        }
        long[] suppressed = {-1};
        windows.compute(client, (k, w) -> {
            if (w == null) {
                w = new Window();
                w.start = now;
                suppressed[0] = 0;
            } else if (now - w.start >= intervalNanos) {
                suppressed[0] = w.suppressed;
                w.start = now;
                w.suppressed = 0;
            } else {
                w.suppressed++;
            }
            return w;
        });
        if (suppressed[0] < 0) {
            return null;
        }
        return connection + ": closing the connection: " + why + (suppressed[0] == 0 ? ""
                : " (" + suppressed[0] + " more such lines from " + client + " not shown)");
    }

    static String client(String connection) {
        return connection.replaceFirst("#\\d+", "");
    }

    private void expire(long now) {
        for (Iterator<Window> it = windows.values().iterator(); it.hasNext(); ) {
            Window w = it.next();
            if (now - w.start >= intervalNanos && w.suppressed == 0) {
                it.remove();
            }
        }
    }
}
