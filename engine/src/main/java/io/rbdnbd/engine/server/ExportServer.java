package io.rbdnbd.engine.server;

import io.rbdnbd.engine.protocol.BadClientLog;
import io.rbdnbd.engine.protocol.ProtocolException;
import io.rbdnbd.engine.stream.BlockingConnection;
import io.rbdnbd.engine.stream.ConnectionIo;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.InFlightBudget;
import io.rbdnbd.engine.stream.IoStats;
import io.rbdnbd.engine.stream.TransmissionFlow;
import org.apache.pekko.Done;
import org.apache.pekko.NotUsed;
import org.apache.pekko.stream.javadsl.Flow;
import org.apache.pekko.util.ByteString;
import org.apache.pekko.actor.ClassicActorSystemProvider;
import org.apache.pekko.stream.Materializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Serves one {@link Export} to NBD clients (qemu, nbdcopy, nbdinfo, fio) on Unix sockets and TCP.
 * Each connection runs the fixed-newstyle handshake on its own thread, then the engine's
 * {@link TransmissionFlow}; every connection shares the export's backend, in-flight budget and
 * {@link IoStats}. What a client may hold is bounded ({@link ExportLimits}): connections per
 * export and per process, the handshake's duration, optionally idle time; a client over a limit,
 * or breaking the protocol, is closed with a rate-limited log line ({@link BadClientLog}).
 */
public final class ExportServer implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(ExportServer.class);

    private final Export export;
    private final EngineSettings settings;
    private final Materializer mat;
    private final InFlightBudget budget;
    private final ExportLimits limits;
    private final ConnectionSlots slots;
    private final BadClientLog badClients;
    private final TlsPolicy.Mode tlsMode;
    private final TlsCredentials tls;
    private final org.apache.pekko.actor.Scheduler scheduler;
    private final scala.concurrent.ExecutionContext timerContext;
    private final IoStats stats = new IoStats();
    private final List<ServerSocketChannel> listeners = new CopyOnWriteArrayList<>();
    private final List<Path> socketFiles = new CopyOnWriteArrayList<>();
    private final Set<Connection> connections = ConcurrentHashMap.newKeySet();
    private final AtomicLong connectionIds = new AtomicLong();
    private volatile boolean draining;

    /**
     * @throws IOException when the TLS credentials the configuration names cannot be loaded
     */
    public ExportServer(ClassicActorSystemProvider system, EngineSettings settings, Export export) throws IOException {
        this.export = export;
        this.settings = settings;
        this.mat = Materializer.matFromSystem(system);
        this.budget = new InFlightBudget(settings.maxInFlightBytes());
        this.limits = ExportLimits.from(system.classicSystem().settings().config());
        this.slots = ConnectionSlots.of(system);
        this.badClients = new BadClientLog(settings.badClientLogInterval());
        this.scheduler = system.classicSystem().scheduler();
        this.timerContext = system.classicSystem().dispatcher();
        TlsSettings tlsSettings = TlsSettings.from(system.classicSystem().settings().config());
        this.tlsMode = tlsSettings.mode();
        this.tls = tlsSettings.credentials();
    }

    /**
     * Listens on a Unix socket; returns the URI clients connect with. A socket file left by a
     * server that died is replaced; a live socket, or a path that is not a socket, is refused.
     */
    public String bindUnix(Path path) throws IOException {
        if (Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
            int mode = (Integer) Files.getAttribute(path, "unix:mode", LinkOption.NOFOLLOW_LINKS);
            if ((mode & 0170000) != 0140000) {
                throw new IOException(path + " exists and is not a socket");
            }
            try (SocketChannel probe = SocketChannel.open(UnixDomainSocketAddress.of(path))) {
                throw new IOException("socket " + path + " is in use by another server");
            } catch (java.net.ConnectException e) {
                Files.delete(path); // connection refused: a stale socket left by a server that died
            }
        }
        ServerSocketChannel ch = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            ch.bind(UnixDomainSocketAddress.of(path));
        } catch (IOException e) {
            ch.close();
            throw new IOException("cannot bind " + path + ": " + e.getMessage(), e);
        }
        socketFiles.add(path);
        startAccepting(ch, "unix:" + path);
        String uri = unixUri(path);
        return tlsMode == TlsPolicy.Mode.REQUIRE ? uri.replaceFirst("^nbd\\+unix:", "nbds+unix:") : uri;
    }

    /** {@code nbd+unix:///?socket=PATH} with PATH percent-encoded as RFC 3986 wants in a query. */
    static String unixUri(Path path) {
        StringBuilder b = new StringBuilder("nbd+unix:///?socket=");
        for (byte c : path.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8)) {
            int u = c & 0xff;
            boolean plain = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9')
                    || "-._~/".indexOf(u) >= 0;
            if (plain) {
                b.append((char) u);
            } else {
                b.append('%').append(Character.toUpperCase(Character.forDigit(u >> 4, 16)))
                        .append(Character.toUpperCase(Character.forDigit(u & 15, 16)));
            }
        }
        return b.toString();
    }

    /** Listens on TCP; port 0 picks a free one. Returns the URI clients connect with. */
    public String bindTcp(String host, int port) throws IOException {
        ServerSocketChannel ch = ServerSocketChannel.open();
        ch.setOption(java.net.StandardSocketOptions.SO_REUSEADDR, true);
        ch.bind(new InetSocketAddress(host, port));
        InetSocketAddress bound = (InetSocketAddress) ch.getLocalAddress();
        startAccepting(ch, "tcp:" + host + ":" + bound.getPort());
        String h = bound.getAddress().getHostAddress();
        return (tlsMode == TlsPolicy.Mode.REQUIRE ? "nbds://" : "nbd://") + (h.contains(":") ? "[" + h + "]" : h) + ":"
                + bound.getPort() + "/";
    }

    private void startAccepting(ServerSocketChannel ch, String where) {
        listeners.add(ch);
        Thread t = new Thread(() -> acceptLoop(ch, where), "nbd-accept-" + where);
        t.setDaemon(true);
        t.start();
        log.info("serving {} on {}{}", export.backend().describe(), where,
                tlsMode == TlsPolicy.Mode.OFF ? "" : " (TLS " + tlsMode.name().toLowerCase(java.util.Locale.ROOT) + ")");
    }

    private void acceptLoop(ServerSocketChannel server, String where) {
        while (!draining) {
            SocketChannel ch;
            try {
                ch = server.accept();
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                if (!draining) {
                    log.error("accept on {} failed, no longer accepting there", where, e);
                }
                return;
            }
            if (draining) {
                closeQuietly(ch);
                return;
            }
            String name = where + "#" + connectionIds.incrementAndGet();
            try {
                if (ch.getRemoteAddress() instanceof InetSocketAddress peer) {
                    name += " from " + peer.getAddress().getHostAddress();
                    ch.setOption(java.net.StandardSocketOptions.TCP_NODELAY, true);
                }
            } catch (IOException e) {
                log.debug("{}: cannot set TCP_NODELAY", name, e);
            }
            admit(ch, name);
        }
    }

    /** Starts the connection's handshake thread, unless a limit refuses it. */
    private void admit(SocketChannel ch, String name) {
        if (connections.size() >= limits.maxConnectionsPerExport()) {
            badClients.closing(name, "refused: " + connections.size() + " connections to this export already"
                    + " (rbdnbd.engine.export.max-connections-per-export)");
            closeQuietly(ch);
            return;
        }
        if (!slots.tryTake()) {
            badClients.closing(name, "refused: " + slots.max() + " client connections in this process already"
                    + " (rbdnbd.engine.export.max-connections)");
            closeQuietly(ch);
            return;
        }
        Connection c;
        try {
            c = new Connection(ch, name);
        } catch (OutOfMemoryError e) { // direct memory for its buffers: this one goes, the others carry on
            slots.give();
            badClients.closing(name, "refused: no memory for its buffers (" + e.getMessage() + ")");
            closeQuietly(ch);
            return;
        }
        connections.add(c);
        try {
            Thread t = new Thread(c::start, "nbd-handshake-" + name);
            t.setDaemon(true);
            t.start();
        } catch (OutOfMemoryError e) { // no thread to be had
            badClients.closing(name, "refused: cannot start a thread for it (" + e.getMessage() + ")");
            c.abort();
        }
    }

    /** The export's I/O statistics since the server was created, every connection together. */
    public IoStats stats() {
        return stats;
    }

    /** Live client connections (handshaking or transmitting). */
    public int connectionCount() {
        return connections.size();
    }

    /**
     * Stops accepting, stops reading new requests on every connection, lets the requests in flight
     * finish and their replies go out (for at most {@code timeout}), then closes everything.
     * The backend is the caller's to close.
     */
    public CompletableFuture<Done> drain(Duration timeout) {
        draining = true;
        closeListeners();
        List<CompletableFuture<Done>> done = connections.stream().map(Connection::drain).toList();
        return CompletableFuture.allOf(done.toArray(CompletableFuture[]::new))
                .completeOnTimeout(null, timeout.toMillis(), TimeUnit.MILLISECONDS)
                .thenApply(v -> {
                    for (Connection c : connections) {
                        log.warn("{}: in-flight requests did not finish within {}; closing", c.name, timeout);
                        c.abort();
                    }
                    return Done.getInstance();
                });
    }

    @Override
    public void close() {
        draining = true;
        closeListeners();
        connections.forEach(Connection::abort);
    }

    private void closeListeners() {
        for (ServerSocketChannel l : listeners) {
            closeQuietly(l);
        }
        listeners.clear();
        for (Path p : socketFiles) {
            try {
                Files.deleteIfExists(p);
            } catch (IOException e) {
                log.warn("cannot remove socket {}: {}", p, e.toString());
            }
        }
        socketFiles.clear();
    }

    private static void closeQuietly(java.io.Closeable c) {
        try {
            c.close();
        } catch (IOException ignored) {
            // closing is best effort: the peer may have gone already
        }
    }

    private final class Connection {
        private final SocketChannel ch;
        private final SocketConnection connection;
        private final String name;
        /** The connection after STARTTLS, or null. */
        private volatile TlsConnection tlsConnection;
        private final CompletableFuture<Done> finished = new CompletableFuture<>();
        private final java.util.concurrent.atomic.AtomicBoolean ended = new java.util.concurrent.atomic.AtomicBoolean();
        private volatile boolean transmitting;

        Connection(SocketChannel ch, String name) {
            this.ch = ch;
            this.name = name;
            this.connection = new SocketConnection(ch, settings.socketReadBytes());
        }

        void start() {
            try {
                handshakeThenTransmit();
            } catch (RuntimeException | Error e) { // never leave a socket open and counted
                log.error("{}: connection failed", name, e);
                end();
            }
        }

        private void handshakeThenTransmit() {
            Optional<Handshake.Result> negotiated;
            org.apache.pekko.actor.Cancellable timeout = scheduler.scheduleOnce(
                    scala.concurrent.duration.Duration.fromNanos(limits.handshakeTimeout().toNanos()), () -> {
                        if (!transmitting && !ended.get()) {
                            badClients.closing(name, "no transmission within the handshake timeout of "
                                    + limits.handshakeTimeout().toSeconds() + " s (rbdnbd.engine.export.handshake-timeout)");
                            abort();
                        }
                    }, timerContext);
            try {
                TlsPolicy policy = tlsMode == TlsPolicy.Mode.OFF ? TlsPolicy.OFF : new TlsPolicy(tlsMode, () -> {
                    TlsConnection t = new TlsConnection(connection, tls.newEngine());
                    t.handshake();
                    tlsConnection = t;
                    return new TlsPolicy.Streams(t.inputStream(), t.outputStream());
                });
                negotiated = new Handshake(export, settings.maxPayload(), name, policy)
                        .run(connection.inputStream(), connection.outputStream());
            } catch (ProtocolException e) {
                badClients.closing(name, "during the handshake: " + e.getMessage());
                end();
                return;
            } catch (javax.net.ssl.SSLException e) {
                badClients.closing(name, "TLS handshake failed: " + e.getMessage());
                end();
                return;
            } catch (IOException e) {
                log.debug("{}: handshake ended: {}", name, e.toString());
                end();
                return;
            } finally {
                timeout.cancel();
            }
            if (negotiated.isEmpty() || draining || ended.get()) {
                end();
                return;
            }
            Handshake.Result r = negotiated.get();
            log.debug("{}: transmission (structured replies: {}, base:allocation: {})", name,
                    r.structuredReplies(), r.baseAllocation());
            transmitting = true;
            Flow<ByteString, ByteString, NotUsed> idle = limits.idleTimeout().isZero()
                    ? Flow.of(ByteString.class)
                    : Flow.of(ByteString.class).idleTimeout(limits.idleTimeout());
            BlockingConnection transport = r.tls() ? tlsConnection : connection;
            ConnectionIo.run(mat, settings, transport, idle.via(TransmissionFlow.create(export.backend(), settings,
                            r.structuredReplies(), r.baseAllocation(), export.effectivelyReadOnly(), budget, stats, name,
                            badClients)))
                    .whenComplete((d, t) -> {
                        if (t instanceof java.util.concurrent.TimeoutException) {
                            log.info("{}: closing the connection: no request for {} s (rbdnbd.engine.export.idle-timeout)",
                                    name, limits.idleTimeout().toSeconds());
                        }
                        if (t != null) {
                            log.debug("{}: connection ended: {}", name, t.toString());
                        }
                        end();
                    });
        }

        /** Stop reading: the flow completes once in-flight requests are answered. */
        CompletableFuture<Done> drain() {
            try {
                if (transmitting) {
                    ch.shutdownInput();
                } else {
                    ch.close(); // still handshaking: nothing in flight to wait for
                }
            } catch (IOException e) {
                abort();
            }
            return finished;
        }

        void abort() {
            closeQuietly(ch);
            end();
        }

        private void end() {
            closeQuietly(ch);
            if (ended.compareAndSet(false, true)) {
                connections.remove(this);
                slots.give();
            }
            finished.complete(Done.getInstance());
        }
    }
}
