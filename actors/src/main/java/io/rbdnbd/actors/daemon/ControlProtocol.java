package io.rbdnbd.actors.daemon;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigRenderOptions;
import com.typesafe.config.ConfigValueFactory;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The control socket's messages, for both ends: a request is one line of JSON with an {@code op}
 * ({@code map} with a {@code device} entry in {@link DeviceRequest}'s form, {@code unmap} with
 * {@code target} and {@code force}, {@code detach}, {@code list}, {@code stats}); the answer is
 * one line with {@code ok} and either the result's fields or {@code error}, a message for the
 * operator.
 */
public final class ControlProtocol {
    public static final String MAP = "map";
    public static final String UNMAP = "unmap";
    public static final String DETACH = "detach";
    public static final String LIST = "list";
    public static final String STATS = "stats";

    private ControlProtocol() {
    }

    public static Map<String, Object> ok(Map<String, ?> fields) {
        Map<String, Object> m = new LinkedHashMap<>(fields);
        m.put("ok", true);
        return m;
    }

    public static Map<String, Object> error(String message) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", false);
        m.put("error", message);
        return m;
    }

    /** Writes one message: a line of JSON. */
    static void writeLine(OutputStream out, Map<String, ?> message) throws IOException {
        out.write((ConfigValueFactory.fromMap(message).render(ConfigRenderOptions.concise()) + "\n")
                .getBytes(StandardCharsets.UTF_8));
        out.flush();
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

    /**
     * Sends one request and waits for its answer.
     *
     * @throws NoDaemonException when no daemon listens on {@code socket}
     * @throws AccessDeniedException when this user may not talk to the daemon (not root)
     * @throws IOException       when the daemon went away before answering
     */
    public static Config call(Path socket, Map<String, ?> request) throws IOException {
        SocketChannel c;
        try {
            c = SocketChannel.open(UnixDomainSocketAddress.of(socket));
        } catch (java.net.ConnectException | java.nio.file.NoSuchFileException e) {
            throw new NoDaemonException("no rbd-nbd daemon listens on " + socket, e);
        } catch (IOException e) {
            if (e.getMessage() != null && e.getMessage().contains("No such file")) {
                throw new NoDaemonException("no rbd-nbd daemon listens on " + socket, e);
            }
            if (e.getMessage() != null && e.getMessage().contains("Permission denied")) {
                throw new AccessDeniedException("cannot open the daemon's control socket " + socket
                        + ": permission denied (rbd-nbd needs root)", e);
            }
            throw e;
        }
        try (c) {
            writeLine(Channels.newOutputStream(c), request);
            String line = new BufferedReader(new InputStreamReader(Channels.newInputStream(c), StandardCharsets.UTF_8))
                    .readLine();
            if (line == null) {
                throw new IOException("the rbd-nbd daemon closed the control connection without answering"
                        + " (it may be exiting; see its log)");
            }
            try {
                return DeviceRequest.parse(line, "daemon's answer");
            } catch (ConfigException e) {
                throw new IOException("the rbd-nbd daemon answered something unreadable: " + line, e);
            }
        }
    }
}
