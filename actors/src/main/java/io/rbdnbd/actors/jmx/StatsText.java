package io.rbdnbd.actors.jmx;

import io.rbdnbd.engine.stream.IoStats;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * What {@code rbd-nbd stats [DEV]} prints: per device a block of {@code Attribute: value} lines,
 * named and ordered as the {@link DeviceMXBean} attributes; blocks separated by a blank line.
 * Maps are {@code k=v, k=v} on one line, commands in {@link IoStats#commandNames()} order and
 * errnos by name, whatever order the map came in (a JMX proxy's maps have none); an empty map
 * leaves the value empty. Rates have one decimal; everything else is printed as is, so that
 * scripts can read it.
 */
public final class StatsText {
    private StatsText() {
    }

    /** Blocks for every device, in the order given; "" for none. */
    public static String format(List<? extends DeviceMXBean> devices) {
        List<String> blocks = new ArrayList<>();
        for (DeviceMXBean d : devices) {
            blocks.add(format(d));
        }
        return String.join("\n", blocks);
    }

    /** One device's block, ending with a newline. */
    public static String format(DeviceMXBean d) {
        StringBuilder b = new StringBuilder();
        line(b, "Device", d.getDevice());
        line(b, "Image", d.getImage());
        line(b, "State", d.getState());
        line(b, "SizeBytes", d.getSizeBytes());
        line(b, "InFlight", d.getInFlight());
        line(b, "ReadIops", rate(d.getReadIops()));
        line(b, "WriteIops", rate(d.getWriteIops()));
        line(b, "ReadBytesPerSecond", rate(d.getReadBytesPerSecond()));
        line(b, "WriteBytesPerSecond", rate(d.getWriteBytesPerSecond()));
        line(b, "Requests", byCommand(d.getRequests()));
        line(b, "Bytes", byCommand(d.getBytes()));
        line(b, "Errors", byCommand(d.getErrors()));
        line(b, "ErrorsByErrno", byName(d.getErrorsByErrno()));
        line(b, "LatencyP50Micros", d.getLatencyP50Micros());
        line(b, "LatencyP90Micros", d.getLatencyP90Micros());
        line(b, "LatencyP99Micros", d.getLatencyP99Micros());
        line(b, "LatencyP999Micros", d.getLatencyP999Micros());
        line(b, "SupervisorRestarts", d.getSupervisorRestarts());
        line(b, "LastError", d.getLastError());
        return b.toString();
    }

    private static void line(StringBuilder b, String key, Object value) {
        String v = String.valueOf(value).replace('\n', ' '); // one line per attribute, whatever an error says
        b.append(key).append(':');
        if (!v.isEmpty()) {
            b.append(' ').append(v);
        }
        b.append('\n');
    }

    private static String rate(double perSecond) {
        return String.format(Locale.ROOT, "%.1f", perSecond);
    }

    /** Known commands first, in the engine's order; anything else after, by name. */
    private static String byCommand(Map<String, Long> m) {
        List<String> keys = new ArrayList<>();
        for (String c : IoStats.commandNames()) {
            if (m.containsKey(c)) {
                keys.add(c);
            }
        }
        m.keySet().stream().filter(k -> !keys.contains(k)).sorted().forEach(keys::add);
        return join(keys, m);
    }

    private static String byName(Map<String, Long> m) {
        return join(m.keySet().stream().sorted().toList(), m);
    }

    private static String join(List<String> keys, Map<String, Long> m) {
        StringBuilder b = new StringBuilder();
        for (String k : keys) {
            if (b.length() > 0) {
                b.append(", ");
            }
            b.append(k).append('=').append(m.get(k));
        }
        return b.toString();
    }
}
