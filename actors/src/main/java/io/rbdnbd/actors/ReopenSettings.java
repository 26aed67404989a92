package io.rbdnbd.actors;

import com.typesafe.config.Config;

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
        s.check();
        return s;
    }

    private void check() {
        require(minBackoff.compareTo(Duration.ZERO) > 0, "rbdnbd.reopen.min-backoff must be positive");
        require(maxBackoff.compareTo(minBackoff) >= 0, "rbdnbd.reopen.max-backoff must be at least min-backoff");
        require(randomFactor >= 0 && randomFactor <= 1, "rbdnbd.reopen.random-factor must be 0..1, is " + randomFactor);
        require(maxAttempts >= 0, "rbdnbd.reopen.max-attempts must be 0 (unlimited) or more, is " + maxAttempts);
        require(!requestWait.isNegative(), "rbdnbd.reopen.request-wait must not be negative");
        require(closeTimeout.compareTo(Duration.ZERO) > 0, "rbdnbd.reopen.close-timeout must be positive");
    }

    private static void require(boolean ok, String message) {
        if (!ok) {
            throw new IllegalArgumentException(message);
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
