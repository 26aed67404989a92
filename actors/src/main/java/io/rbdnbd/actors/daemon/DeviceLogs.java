package io.rbdnbd.actors.daemon;

import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Which devices have a log file of their own (map --log-file), by the path of the actor that
 * supervises each: every line logged by that actor or its children (the kernel attach, the image's
 * supervisor), which Pekko marks with its path in the MDC key {@link #SOURCE}, and the daemon's
 * own lines about the device (marked with {@link #DEVICE}), belong in that file too. The logging
 * backend's appender reads this; the daemon's log keeps every line either way.
 */
public final class DeviceLogs {
    /** The MDC key Pekko puts the logging actor's path in. */
    public static final String SOURCE = "pekkoSource";
    /** The MDC key the daemon puts a device's supervisor path in for its own lines about it. */
    public static final String DEVICE = "rbdnbd.device";

    private static final Map<String, Path> FILES = new ConcurrentHashMap<>();

    private DeviceLogs() {
    }

    public static void add(String supervisorPath, Path file) {
        FILES.put(supervisorPath, file);
    }

    public static void remove(String supervisorPath) {
        FILES.remove(supervisorPath);
    }

    /** The file for a line from {@code source} (an actor path), if its device has one. */
    public static Optional<Path> fileFor(String source) {
        if (source == null || FILES.isEmpty()) {
            return Optional.empty();
        }
        for (Map.Entry<String, Path> e : FILES.entrySet()) {
            String p = e.getKey();
            if (source.equals(p) || source.startsWith(p + "/")) {
                return Optional.of(e.getValue());
            }
        }
        return Optional.empty();
    }
}
