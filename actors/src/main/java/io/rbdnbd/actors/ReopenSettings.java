package io.rbdnbd.actors;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;

import java.time.Duration;

/** The {@code rbdnbd.reopen} section of the configuration (documented in reference.conf). */
public record ReopenSettings(Duration minBackoff, Duration maxBackoff, double randomFactor, int maxAttempts,
                             Duration requestWait, Duration closeTimeout, String dispatcher) {

    public static ReopenSettings from(Config root) {
        Config c = root.getConfig("rbdnbd.reopen");
        ReopenSettings s = new ReopenSettings(
                c.getDuration("min-backoff"),
                c.getDuration("max-backoff"),
                c.getDouble("random-factor"),
                c.getInt("max-attempts"),
                c.getDuration("request-wait"),
                c.getDuration("close-timeout"),
                c.getString("dispatcher"));
        require(c, "min-backoff", s.minBackoff.compareTo(Duration.ZERO) > 0, "must be positive");
        require(c, "max-backoff", s.maxBackoff.compareTo(s.minBackoff) >= 0, "must be at least min-backoff");
        require(c, "random-factor", s.randomFactor >= 0 && s.randomFactor <= 1, "must be 0..1, is " + s.randomFactor);
        require(c, "max-attempts", s.maxAttempts >= 0, "must be 0 (unlimited) or more, is " + s.maxAttempts);
        require(c, "request-wait", !s.requestWait.isNegative(), "must not be negative");
        require(c, "close-timeout", s.closeTimeout.compareTo(Duration.ZERO) > 0, "must be positive");
        return s;
    }

    /** @throws ConfigException.BadValue naming the file and line the value came from */
    private static void require(Config c, String key, boolean ok, String message) {
        if (!ok) {
            throw new ConfigException.BadValue(c.getValue(key).origin(), "rbdnbd.reopen." + key, message);
        }
    }

    /**
     * The wait before reopen attempt {@code attempt} (1 for the first): min-backoff doubled per
     * earlier attempt, at most max-backoff, lengthened by {@code random} (0..1) times the random
     * factor.
     */
    public Duration backoff(int attempt, double random) {
        double base = Math.min((double) maxBackoff.toNanos(),
                minBackoff.toNanos() * Math.pow(2, Math.min(attempt - 1, 62)));
        return Duration.ofNanos((long) (base * (1 + random * randomFactor)));
    }
}
