package io.rbdnbd.actors.daemon;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import io.rbdnbd.engine.backend.ImageSpec;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Function;

/**
 * The daemon's control socket: a Unix socket only its owner (root) can open, for {@code map},
 * {@code unmap}, {@code detach}, {@code list-mapped} and {@code stats}. One request per
 * connection, one line of JSON each way (see {@link ControlProtocol}); a request waits for its
 * answer (a map until the device is usable).
 */
public final class ControlServer implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(ControlServer.class);
    /** Longest request line accepted: a device entry is a few hundred bytes. */
    private static final int MAX_LINE = 64 * 1024;

    /** What the server asks of the daemon; the daemon's actor in production. */
    public interface Handler {
        /** Answers one request. */
        CompletionStage<ControlProtocol.Answer> handle(ControlProtocol.Request request);
    }

    private final Path path;
    private final ServerSocketChannel server;
    private final ExecutorService connections;
    private final Thread acceptor;

    private ControlServer(Path path, ServerSocketChannel server, Handler handler) {
        this.path = path;
        this.server = server;
        this.connections = Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r, "rbdnbd-control-connection");
            t.setDaemon(true);
            return t;
        });
        this.acceptor = new Thread(() -> acceptLoop(handler), "rbdnbd-control");
        acceptor.setDaemon(true);
    }

    /**
     * Binds {@code path} (its directory made 0700, the socket 0600) and serves until closed. A
     * socket file left by a dead daemon is replaced: the caller holds the daemon lock, so no live
     * daemon can own it.
     */
    public static ControlServer start(Path path, Handler handler) throws IOException {
        Path dir = path.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
        Files.deleteIfExists(path);
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(path));
        Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
        ControlServer s = new ControlServer(path, server, handler);
        s.acceptor.start();
        log.info("control socket {}", path);
        return s;
    }

    /** The handler that asks the daemon's actor. */
    public static Handler daemonHandler(ActorRef<DaemonGuardian.Command> daemon, Scheduler scheduler,
                                        Config deviceDefaults, Duration mapTimeout) {
        Duration timeout = mapTimeout.plusSeconds(5);
        return request -> {
            if (request instanceof ControlProtocol.MapRequest m) {
                DeviceRequest r;
                try {
                    r = DeviceRequest.from(m.device(), deviceDefaults);
                } catch (ConfigException e) {
                    return CompletableFuture.completedFuture(new ControlProtocol.Failed(e.getMessage()));
                }
                return ControlServer.<DaemonGuardian.MapReply>ask(daemon, scheduler, timeout,
                        to -> new DaemonGuardian.Map(r, to), reply -> reply.error() != null
                        ? new ControlProtocol.Failed(reply.error())
                        : new ControlProtocol.Mapped(reply.device(), reply.cookie(), reply.pid()));
            } else if (request instanceof ControlProtocol.UnmapRequest u) {
                return ControlServer.<DaemonGuardian.Reply>ask(daemon, scheduler, timeout,
                        to -> new DaemonGuardian.Unmap(u.target(), u.snapId(), u.force(), to), ControlServer::done);
            } else if (request instanceof ControlProtocol.DetachRequest d) {
                return ControlServer.<DaemonGuardian.Reply>ask(daemon, scheduler, timeout,
                        to -> new DaemonGuardian.Detach(d.target(), d.snapId(), to), ControlServer::done);
            } else if (request instanceof ControlProtocol.StatsRequest st) {
                return ControlServer.<DaemonGuardian.StatsReply>ask(daemon, scheduler, timeout,
                        to -> new DaemonGuardian.Stats(st.target(), to), r -> r.error() != null
                        ? new ControlProtocol.Failed(r.error()) : new ControlProtocol.StatsText(r.text()));
            } else {
                return ControlServer.<DaemonGuardian.Listing>ask(daemon, scheduler, timeout, DaemonGuardian.ListDevices::new,
                        listing -> new ControlProtocol.Listed(listing.devices().stream().map(ControlServer::row).toList()));
            }
        };
    }

    /** Ceph's list-mapped columns for a device. */
    private static ControlProtocol.MappedDevice row(DaemonGuardian.Device d) {
        if (d.image() instanceof ImageSpec.Rbd r) {
            return new ControlProtocol.MappedDevice(d.pid(), r.pool(), r.namespace(), r.image(),
                    r.snap() != null ? r.snap() : r.snapId() >= 0 ? "@" + r.snapId() : "", d.device(), d.cookie(),
                    d.state().label());
        }
        return new ControlProtocol.MappedDevice(d.pid(), "", "", d.spec(), "", d.device(), d.cookie(), d.state().label());
    }

    private static ControlProtocol.Answer done(DaemonGuardian.Reply r) {
        return r.error() != null ? new ControlProtocol.Failed(r.error()) : new ControlProtocol.Done();
    }

    private static <T> CompletionStage<ControlProtocol.Answer> ask(ActorRef<DaemonGuardian.Command> daemon,
            Scheduler scheduler, Duration timeout, org.apache.pekko.japi.function.Function<ActorRef<T>, DaemonGuardian.Command> message,
            Function<T, ControlProtocol.Answer> answer) {
        return AskPattern.ask(daemon, message, timeout, scheduler).thenApply(answer)
                .exceptionally(t -> new ControlProtocol.Failed("the daemon did not answer within " + timeout.toSeconds()
                        + " s (" + t + ")"));
    }

    private void acceptLoop(Handler handler) {
        while (server.isOpen()) {
            SocketChannel c;
            try {
                c = server.accept();
            } catch (IOException e) {
                if (server.isOpen()) {
                    log.error("control socket {}: accept failed: {}", path, e.toString());
                }
                return;
            }
            connections.execute(() -> serve(c, handler));
        }
    }

    private static void serve(SocketChannel c, Handler handler) {
        try (c) {
            BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(c), StandardCharsets.UTF_8));
            String line = readLine(in);
            if (line == null) {
                return;
            }
            ControlProtocol.Answer answer;
            try {
                answer = handler.handle(ControlProtocol.decodeRequest(line)).toCompletableFuture().join();
            } catch (ControlProtocol.MalformedMessage e) {
                answer = new ControlProtocol.Failed(e.getMessage());
            } catch (RuntimeException e) {
                log.error("control request failed", e);
                answer = new ControlProtocol.Failed("the daemon failed to answer: " + e);
            }
            ControlProtocol.writeLine(Channels.newOutputStream(c), ControlProtocol.encode(answer));
        } catch (IOException e) {
            log.debug("control connection: {}", e.toString());
        }
    }

    private static String readLine(BufferedReader in) throws IOException {
        StringBuilder b = new StringBuilder();
        for (int ch; (ch = in.read()) >= 0; ) {
            if (ch == '\n') {
                return b.toString();
            }
            if (b.length() >= MAX_LINE) {
                throw new IOException("control request longer than " + MAX_LINE + " bytes");
            }
            b.append((char) ch);
        }
        return b.length() == 0 ? null : b.toString();
    }

    /** Stops accepting and removes the socket file. */
    @Override
    public void close() {
        try {
            server.close();
            Files.deleteIfExists(path);
        } catch (IOException e) {
            log.warn("closing the control socket {}: {}", path, e.toString());
        }
        connections.shutdown();
    }
}
