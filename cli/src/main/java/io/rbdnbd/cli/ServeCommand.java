package io.rbdnbd.cli;

import com.typesafe.config.Config;
import io.rbdnbd.actors.ExportGuardian;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.engine.backend.MemoryBackend;
import io.rbdnbd.engine.server.ExportLimits;
import io.rbdnbd.engine.server.TlsSettings;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.MemoryBound;
import org.apache.pekko.actor.typed.ActorSystem;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import sun.misc.Signal;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;

/** {@code rbd-nbd serve}: one image as an NBD export, in the foreground, until SIGTERM/SIGINT. */
final class ServeCommand {
    private static final Logger log = LoggerFactory.getLogger(ServeCommand.class);

    /** Exports are local unless the operator names another address. */
    static final String DEFAULT_LISTEN_HOST = "127.0.0.1";

    record Listen(String host, int port) {
    }

    private final ImageSpec image;
    private final List<Path> sockets;
    private final List<Listen> listens;
    private final boolean readOnly;
    private final long createSize;
    private final String name;
    private final RbdOptions rbd;
    /** rbdnbd.engine.export.tls settings given on the command line. */
    private final java.util.Map<String, Object> tls;

    ServeCommand(ImageSpec image, List<Path> sockets, List<Listen> listens, boolean readOnly, long createSize,
                 String name, RbdOptions rbd, java.util.Map<String, Object> tls) {
        this.rbd = rbd;
        this.tls = tls;
        this.image = image;
        this.sockets = sockets;
        this.listens = listens;
        this.readOnly = readOnly;
        this.createSize = createSize;
        this.name = name;
    }

    static ServeCommand parse(String[] args) throws UsageException {
        String spec = null;
        List<Path> sockets = new ArrayList<>();
        List<Listen> listens = new ArrayList<>();
        boolean readOnly = false;
        long size = -1;
        String name = "";
        RbdOptions rbd = new RbdOptions("serve");
        java.util.Map<String, Object> tls = new java.util.HashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            int taken = rbd.accept(args, i);
            if (taken >= 0) {
                i = taken;
                continue;
            }
            switch (a) {
                case "--socket" -> sockets.add(Path.of(value(args, ++i, a)).toAbsolutePath());
                case "--listen" -> listens.add(parseListen(value(args, ++i, a)));
                case "--read-only" -> readOnly = true;
                case "--size" -> size = parseSize(value(args, ++i, a));
                case "--name" -> name = value(args, ++i, a);
                case "--tls" -> {
                    String mode = value(args, ++i, a);
                    if (!List.of("off", "on", "require").contains(mode)) {
                        throw new UsageException("serve: --tls wants off, on or require, got '" + mode + "'");
                    }
                    tls.put("rbdnbd.engine.export.tls.mode", mode);
                }
                case "--tls-certs" -> tls.put("rbdnbd.engine.export.tls.certs",
                        Path.of(value(args, ++i, a)).toAbsolutePath().toString());
                case "--tls-verify-peer" -> tls.put("rbdnbd.engine.export.tls.verify-peer", true);
                default -> {
                    if (a.startsWith("-")) {
                        throw new UsageException("serve: unknown option '" + a + "'");
                    }
                    if (spec != null) {
                        throw new UsageException("serve: one image only, got '" + spec + "' and '" + a + "'");
                    }
                    spec = a;
                }
            }
        }
        if (spec == null) {
            throw new UsageException("serve: no image given (file:PATH or memory:SIZE)");
        }
        if (sockets.isEmpty() && listens.isEmpty()) {
            throw new UsageException("serve: give --socket PATH or --listen HOST:PORT");
        }
        ImageSpec image;
        try {
            image = ImageSpec.parse(spec);
        } catch (IllegalArgumentException e) {
            throw new UsageException("serve: " + e.getMessage());
        }
        image = rbd.apply(image);
        if (size >= 0 && !(image instanceof ImageSpec.FileImage)) {
            throw new UsageException("serve: --size applies to file: images only");
        }
        return new ServeCommand(image, sockets, listens, readOnly, size, name, rbd, tls);
    }

    private static String value(String[] args, int i, String option) throws UsageException {
        if (i >= args.length) {
            throw new UsageException("serve: " + option + " needs a value");
        }
        return args[i];
    }

    private static long parseSize(String s) throws UsageException {
        try {
            return ImageSpec.parseSize(s);
        } catch (IllegalArgumentException e) {
            throw new UsageException("serve: --size: " + e.getMessage());
        }
    }

    /** HOST:PORT, [V6HOST]:PORT, or :PORT and PORT for the loopback address. */
    static Listen parseListen(String s) throws UsageException {
        int colon = s.lastIndexOf(':');
        if (colon == s.length() - 1) {
            throw new UsageException("serve: --listen wants HOST:PORT, got '" + s + "'");
        }
        String host = colon <= 0 ? DEFAULT_LISTEN_HOST : s.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        try {
            int port = Integer.parseInt(s.substring(colon + 1));
            if (port < 0 || port > 65535) {
                throw new NumberFormatException();
            }
            return new Listen(host, port);
        } catch (NumberFormatException e) {
            throw new UsageException("serve: --listen port must be 0..65535, got '" + s.substring(colon + 1) + "'");
        }
    }

    /** Configuration the command line sets (the Ceph connection), above every file. */
    Config configOverrides() {
        return com.typesafe.config.ConfigFactory.parseMap(tls, "the command line").withFallback(rbd.configOverrides());
    }

    int run(Config config, PrintStream out) throws CommandFailedException {
        EngineSettings settings = EngineSettings.from(config);
        try {
            long imageHeap = image instanceof ImageSpec.MemoryImage m ? m.size() : 0;
            MemoryBackend.requireFitsMachine(imageHeap, MemoryBackend.machineRam());
            MemoryBound.export(settings, ExportLimits.from(config).maxConnections(), imageHeap).requireFitsThisJvm();
            TlsSettings.from(config);
        } catch (IllegalStateException | IllegalArgumentException | com.typesafe.config.ConfigException e) {
            throw new CommandFailedException(e.getMessage(), null);
        }
        CompletableFuture<ExportGuardian.Report> started = new CompletableFuture<>();
        CompletableFuture<ExportGuardian.Report> stopped = new CompletableFuture<>();
        ExportGuardian.Params params = new ExportGuardian.Params(image, readOnly, createSize, name, sockets,
                listens.stream().map(l -> new ExportGuardian.Listen(l.host(), l.port())).toList());
        ActorSystem<ExportGuardian.Command> system = ActorSystem.create(ExportGuardian.root(params, settings, r -> {
            if (r instanceof ExportGuardian.Stopped) {
                stopped.complete(r);
            } else {
                started.complete(r);
            }
        }), "rbdnbd", config);
        system.getWhenTerminated().thenRun(() -> started.complete(
                new ExportGuardian.Failed("stopped before serving; see the log above")));
        ExportGuardian.Report start = started.join();
        if (start instanceof ExportGuardian.Failed f) {
            system.getWhenTerminated().toCompletableFuture().join();
            throw new CommandFailedException(f.reason(), null);
        }
        ((ExportGuardian.Started) start).uris().forEach(out::println);
        out.flush();
        CountDownLatch signalled = new CountDownLatch(1);
        Signal.handle(new Signal("TERM"), s -> signalled.countDown());
        Signal.handle(new Signal("INT"), s -> signalled.countDown());
        awaitUninterruptibly(signalled);
        log.info("signal received: stopping");
        system.tell(new ExportGuardian.Stop());
        ExportGuardian.Report end = stopped.join();
        system.getWhenTerminated().toCompletableFuture().join();
        return ((ExportGuardian.Stopped) end).clean() ? 0 : Main.EXIT_FAILURE;
    }

    private static void awaitUninterruptibly(CountDownLatch latch) {
        while (true) {
            try {
                latch.await();
                return;
            } catch (InterruptedException e) {
                // only a signal ends serving
            }
        }
    }
}
