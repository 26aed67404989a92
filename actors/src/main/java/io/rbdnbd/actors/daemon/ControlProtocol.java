package io.rbdnbd.actors.daemon;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigRenderOptions;
import com.typesafe.config.ConfigValueFactory;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The control socket's messages and their one codec, for both ends: a {@link Request} record per
 * operation goes to the daemon as one line of JSON ({@code op} and the record's fields), and one
 * {@link Answer} record comes back as one line ({@code answer} naming its kind, and its fields).
 * A failure is a {@link Failed} answer with a message for the operator; what the caller does with
 * an answer depends on its type, never on its text.
 */
public final class ControlProtocol {
    private ControlProtocol() {
    }

    /** A request to the daemon. */
    public sealed interface Request permits MapRequest, UnmapRequest, DetachRequest, ListRequest, StatsRequest {
    }

    /** Map (or, with {@code attach = true} in it, take over) the device a {@link DeviceRequest} entry describes. */
    public record MapRequest(Config device) implements Request {
    }

    /** @param target /dev/nbdN or an image spec; @param snapId -1 unless {@code --snap-id} names the snapshot */
    public record UnmapRequest(String target, long snapId, boolean force) implements Request {
    }

    /** Leave a netlink device to the kernel (for attach) and stop serving it. */
    public record DetachRequest(String target, long snapId) implements Request {
    }

    public record ListRequest() implements Request {
    }

    /** @param target a device or image, "" for every device */
    public record StatsRequest(String target) implements Request {
    }

    /** The daemon's answer to a request. */
    public sealed interface Answer permits Mapped, Done, Listed, StatsText, Failed {
    }

    /** @param id the id list-mapped shows for the device (its process's pid) */
    public record Mapped(String device, String cookie, long id) implements Answer {
    }

    /** Unmapped or detached. */
    public record Done() implements Answer {
    }

    public record Listed(List<MappedDevice> devices) implements Answer {
    }

    /** @param text as {@code rbd-nbd stats} prints it */
    public record StatsText(String text) implements Answer {
    }

    /** @param error what went wrong, for the operator */
    public record Failed(String error) implements Answer {
    }

    /**
     * A device as {@code list-mapped} shows it: Ceph's columns (empty strings where Ceph prints
     * them empty: no namespace, no snapshot) and its state.
     */
    public record MappedDevice(long id, String pool, String namespace, String image, String snap, String device,
                               String cookie, String state) {
    }

    /** A line that is not a message of this protocol. */
    public static final class MalformedMessage extends Exception {
        private static final long serialVersionUID = 1L;

        MalformedMessage(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** The daemon is not there (no socket, or nobody listening on it). */
    public static final class NoDaemonException extends IOException {
        private static final long serialVersionUID = 1L;

        NoDaemonException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** The daemon is there, but this user may not talk to it (its socket is root's). */
    public static final class AccessDeniedException extends IOException {
        private static final long serialVersionUID = 1L;

        AccessDeniedException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    public static String encode(Request request) {
        Map<String, Object> m = new LinkedHashMap<>();
        if (request instanceof MapRequest r) {
            m.put("op", "map");
            m.put("device", r.device().root().unwrapped()); // nested: "ceph.options.x" is a path, not a key
        } else if (request instanceof UnmapRequest r) {
            m.put("op", "unmap");
            m.put("target", r.target());
            m.put("snap-id", r.snapId());
            m.put("force", r.force());
        } else if (request instanceof DetachRequest r) {
            m.put("op", "detach");
            m.put("target", r.target());
            m.put("snap-id", r.snapId());
        } else if (request instanceof StatsRequest r) {
            m.put("op", "stats");
            m.put("target", r.target());
        } else {
            m.put("op", "list");
        }
        return json(m);
    }

    public static Request decodeRequest(String line) throws MalformedMessage {
        Config c = parse(line, "control request");
        try {
            String op = c.getString("op");
            return switch (op) {
                case "map" -> new MapRequest(c.getConfig("device"));
                case "unmap" -> new UnmapRequest(c.getString("target"), c.getLong("snap-id"), c.getBoolean("force"));
                case "detach" -> new DetachRequest(c.getString("target"), c.getLong("snap-id"));
                case "list" -> new ListRequest();
                case "stats" -> new StatsRequest(c.getString("target"));
                default -> throw new MalformedMessage("unknown control request '" + op + "'", null);
            };
        } catch (ConfigException e) {
            throw new MalformedMessage("malformed control request: " + e.getMessage(), e);
        }
    }

    public static String encode(Answer answer) {
        Map<String, Object> m = new LinkedHashMap<>();
        if (answer instanceof Mapped a) {
            m.put("answer", "mapped");
            m.put("device", a.device());
            m.put("cookie", a.cookie());
            m.put("id", a.id());
        } else if (answer instanceof Listed a) {
            m.put("answer", "listed");
            List<Map<String, Object>> rows = new ArrayList<>();
            for (MappedDevice d : a.devices()) {
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("id", d.id());
                row.put("pool", d.pool());
                row.put("namespace", d.namespace());
                row.put("image", d.image());
                row.put("snap", d.snap());
                row.put("device", d.device());
                row.put("cookie", d.cookie());
                row.put("state", d.state());
                rows.add(row);
            }
            m.put("devices", rows);
        } else if (answer instanceof StatsText a) {
            m.put("answer", "stats");
            m.put("text", a.text());
        } else if (answer instanceof Failed a) {
            m.put("answer", "failed");
            m.put("error", a.error());
        } else {
            m.put("answer", "done");
        }
        return json(m);
    }

    public static Answer decodeAnswer(String line) throws MalformedMessage {
        Config c = parse(line, "daemon's answer");
        try {
            String kind = c.getString("answer");
            return switch (kind) {
                case "mapped" -> new Mapped(c.getString("device"), c.getString("cookie"), c.getLong("id"));
                case "done" -> new Done();
                case "listed" -> {
                    List<MappedDevice> devices = new ArrayList<>();
                    for (Config d : c.getConfigList("devices")) {
                        devices.add(new MappedDevice(d.getLong("id"), d.getString("pool"), d.getString("namespace"),
                                d.getString("image"), d.getString("snap"), d.getString("device"), d.getString("cookie"),
                                d.getString("state")));
                    }
                    yield new Listed(List.copyOf(devices));
                }
                case "stats" -> new StatsText(c.getString("text"));
                case "failed" -> new Failed(c.getString("error"));
                default -> throw new MalformedMessage("unknown answer '" + kind + "'", null);
            };
        } catch (ConfigException e) {
            throw new MalformedMessage("malformed answer: " + e.getMessage(), e);
        }
    }

    private static Config parse(String line, String what) throws MalformedMessage {
        try {
            return DeviceRequest.parse(line, what);
        } catch (ConfigException e) {
            throw new MalformedMessage("malformed " + what + ": " + e.getMessage(), e);
        }
    }

    private static String json(Map<String, Object> m) {
        return ConfigValueFactory.fromMap(m).render(ConfigRenderOptions.concise());
    }

    /** Writes one message: a line of JSON. */
    static void writeLine(OutputStream out, String message) throws IOException {
        out.write((message + "\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    /** Whether this user may pass every directory on the way to {@code file}. */
    private static boolean searchable(Path file) {
        for (Path dir = file.toAbsolutePath().getParent(); dir != null; dir = dir.getParent()) {
            if (Files.isDirectory(dir) && !Files.isExecutable(dir)) {
                return false;
            }
        }
        return true;
    }

    /**
     * Sends one request and waits for its answer.
     *
     * @throws NoDaemonException     when no daemon listens on {@code socket}
     * @throws AccessDeniedException when this user may not talk to the daemon (not root)
     * @throws IOException           when the daemon went away before answering, or answered nonsense
     */
    public static Answer call(Path socket, Request request) throws IOException {
        SocketChannel c;
        try {
            c = SocketChannel.open(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            // Told apart by the file system, not by the exception's text. Any other failure means
            // no daemon listens there now: no socket file (a starting daemon may create it an
            // instant later), a dead daemon's file (refused), or one being removed.
            if (!searchable(socket) || (Files.exists(socket) && !Files.isWritable(socket))) {
                throw new AccessDeniedException("cannot open the daemon's control socket " + socket
                        + ": permission denied (rbd-nbd needs root)", e);
            }
            throw new NoDaemonException("no rbd-nbd daemon listens on " + socket, e);
        }
        try (c) {
            writeLine(Channels.newOutputStream(c), encode(request));
            String line = new BufferedReader(new InputStreamReader(Channels.newInputStream(c), StandardCharsets.UTF_8))
                    .readLine();
            if (line == null) {
                throw new IOException("the rbd-nbd daemon closed the control connection without answering"
                        + " (it may be exiting; see its log)");
            }
            try {
                return decodeAnswer(line);
            } catch (MalformedMessage e) {
                throw new IOException("the rbd-nbd daemon answered something unreadable: " + line, e);
            }
        }
    }
}
