package io.rbdnbd.cli;

import io.rbdnbd.actors.daemon.ControlProtocol.MappedDevice;

import java.util.ArrayList;
import java.util.List;

/**
 * {@code list-mapped} output in Ceph rbd-nbd's three formats, byte for byte where scripts parse
 * it: plain is Ceph's TextTable (columns padded to their widest cell, each followed by one
 * space, nothing at all when no device is mapped); json and xml are what Ceph's formatters print,
 * compact or with {@code --pretty-format}.
 */
final class MappedListing {
    private MappedListing() {
    }

    /** A device's cells in Ceph's plain table ("-" for no snapshot). */
    private static List<String> cells(MappedDevice r) {
        return List.of(Long.toString(r.id()), r.pool(), r.namespace(), r.image(), r.snap().isEmpty() ? "-" : r.snap(),
                r.device(), r.cookie());
    }

    static final List<String> COLUMNS = List.of("id", "pool", "namespace", "image", "snap", "device", "cookie");

    /** @throws UsageException for a format other than plain, json and xml */
    static String format(List<MappedDevice> rows, String format, boolean pretty) throws UsageException {
        return switch (format) {
            case "plain" -> plain(rows);
            case "json" -> json(rows, pretty);
            case "xml" -> xml(rows, pretty);
            default -> throw new UsageException("list-mapped: --format must be plain, json or xml, not '" + format + "'");
        };
    }

    private static String plain(List<MappedDevice> rows) {
        if (rows.isEmpty()) {
            return "";
        }
        int[] width = COLUMNS.stream().mapToInt(String::length).toArray();
        for (MappedDevice r : rows) {
            List<String> c = cells(r);
            for (int i = 0; i < width.length; i++) {
                width[i] = Math.max(width[i], c.get(i).length());
            }
        }
        StringBuilder sb = new StringBuilder();
        line(sb, COLUMNS, width);
        for (MappedDevice r : rows) {
            line(sb, cells(r), width);
        }
        return sb.toString();
    }

    private static void line(StringBuilder sb, List<String> cells, int[] width) {
        for (int i = 0; i < cells.size(); i++) {
            String c = cells.get(i);
            sb.append(c).append(" ".repeat(width[i] - c.length())).append(' ');
        }
        sb.append('\n');
    }

    private static List<String[]> fields(MappedDevice r) {
        List<String[]> f = new ArrayList<>();
        f.add(new String[]{"id", Long.toString(r.id()), "number"});
        f.add(new String[]{"pool", r.pool()});
        f.add(new String[]{"namespace", r.namespace()});
        f.add(new String[]{"image", r.image()});
        f.add(new String[]{"snap", r.snap()});
        f.add(new String[]{"device", r.device()});
        f.add(new String[]{"cookie", r.cookie()});
        return f;
    }

    private static String json(List<MappedDevice> rows, boolean pretty) {
        if (!pretty) {
            StringBuilder sb = new StringBuilder("[");
            for (int i = 0; i < rows.size(); i++) {
                sb.append(i == 0 ? "{" : ",{");
                List<String[]> f = fields(rows.get(i));
                for (int k = 0; k < f.size(); k++) {
                    sb.append(k == 0 ? "" : ",").append(jsonString(f.get(k)[0])).append(':').append(jsonValue(f.get(k)));
                }
                sb.append('}');
            }
            return sb.append(']').toString();
        }
        if (rows.isEmpty()) {
            return "[]\n";
        }
        StringBuilder sb = new StringBuilder("[\n");
        for (int i = 0; i < rows.size(); i++) {
            sb.append("    {\n");
            List<String[]> f = fields(rows.get(i));
            for (int k = 0; k < f.size(); k++) {
                sb.append("        ").append(jsonString(f.get(k)[0])).append(": ").append(jsonValue(f.get(k)))
                        .append(k + 1 < f.size() ? ",\n" : "\n");
            }
            sb.append(i + 1 < rows.size() ? "    },\n" : "    }\n");
        }
        return sb.append("]\n").toString();
    }

    private static String jsonValue(String[] field) {
        return field.length > 2 ? field[1] : jsonString(field[1]);
    }

    static String jsonString(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        return sb.append('"').toString();
    }

    private static String xml(List<MappedDevice> rows, boolean pretty) {
        StringBuilder sb = new StringBuilder("<devices>");
        if (pretty) {
            sb.append('\n');
        }
        for (MappedDevice r : rows) {
            sb.append(pretty ? "    <device>\n" : "<device>");
            for (String[] f : fields(r)) {
                sb.append(pretty ? "        " : "").append('<').append(f[0]).append('>').append(xmlText(f[1]))
                        .append("</").append(f[0]).append('>').append(pretty ? "\n" : "");
            }
            sb.append(pretty ? "    </device>\n" : "</device>");
        }
        return sb.append(pretty ? "</devices>\n\n" : "</devices>").toString();
    }

    private static String xmlText(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;")
                .replace("'", "&apos;");
    }
}
