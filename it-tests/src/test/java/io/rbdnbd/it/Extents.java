package io.rbdnbd.it;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Allocation maps as the clients print them, parsed and normalised for comparison. */
final class Extents {
    private Extents() {
    }

    /** A run of bytes of one kind ("data", "hole,zero", ...). */
    record Extent(long offset, long length, String kind) {
        long end() {
            return offset + length;
        }

        @Override
        public String toString() {
            return "[" + offset + "+" + length + " " + kind + "]";
        }
    }

    private static final Pattern NBDINFO_LINE = Pattern.compile("^\\s*(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\S.*?)\\s*$");
    private static final Pattern QEMU_MAP_ENTRY = Pattern.compile(
            "\\{\\s*\"start\":\\s*(\\d+),\\s*\"length\":\\s*(\\d+),.*?\"zero\":\\s*(true|false),\\s*\"data\":\\s*(true|false)");

    /** Parses {@code nbdinfo --map} text output ("offset length type description" lines). */
    static List<Extent> parseNbdinfoMap(String output) {
        List<Extent> list = new ArrayList<>();
        for (String line : output.split("\n")) {
            if (line.isBlank()) {
                continue;
            }
            Matcher m = NBDINFO_LINE.matcher(line);
            if (!m.matches()) {
                throw new AssertionError("unexpected nbdinfo --map line '" + line + "' in:\n" + output);
            }
            list.add(new Extent(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)), m.group(4)));
        }
        return merge(list);
    }

    /** Parses {@code qemu-img map --output=json}: kind is "data" or "zero" (or "data,zero"/"hole"). */
    static List<Extent> parseQemuMap(String json) {
        List<Extent> list = new ArrayList<>();
        Matcher m = QEMU_MAP_ENTRY.matcher(json);
        while (m.find()) {
            boolean zero = Boolean.parseBoolean(m.group(3));
            boolean data = Boolean.parseBoolean(m.group(4));
            String kind = data ? (zero ? "data,zero" : "data") : (zero ? "zero" : "hole");
            list.add(new Extent(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)), kind));
        }
        if (list.isEmpty()) {
            throw new AssertionError("no extents in qemu-img map output:\n" + json);
        }
        return merge(list);
    }

    /** Joins neighbours of the same kind and checks the extents are contiguous from 0. */
    static List<Extent> merge(List<Extent> in) {
        List<Extent> out = new ArrayList<>();
        long expectedOffset = 0;
        for (Extent e : in) {
            if (e.offset() != expectedOffset) {
                throw new AssertionError("extents not contiguous: " + e + " after offset " + expectedOffset + " in " + in);
            }
            expectedOffset = e.end();
            Extent last = out.isEmpty() ? null : out.get(out.size() - 1);
            if (last != null && last.kind().equals(e.kind())) {
                out.set(out.size() - 1, new Extent(last.offset(), last.length() + e.length(), last.kind()));
            } else {
                out.add(e);
            }
        }
        return out;
    }

    /**
     * The map expected when {@code data} ranges (offset, length pairs, sorted, not touching) hold
     * data in an export of {@code size} bytes and everything else is a hole of {@code holeKind}.
     */
    static List<Extent> expected(long size, String holeKind, long... data) {
        List<Extent> list = new ArrayList<>();
        long pos = 0;
        for (int i = 0; i < data.length; i += 2) {
            if (data[i] > pos) {
                list.add(new Extent(pos, data[i] - pos, holeKind));
            }
            list.add(new Extent(data[i], data[i + 1], "data"));
            pos = data[i] + data[i + 1];
        }
        if (pos < size) {
            list.add(new Extent(pos, size - pos, holeKind));
        }
        return merge(list);
    }
}
