package io.rbdnbd.actors;

import io.rbdnbd.engine.backend.Backends;
import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.engine.server.Export;
import io.rbdnbd.engine.server.ExportServer;
import io.rbdnbd.engine.stream.EngineSettings;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Owns one NBD export's lifecycle: opens the backend (an {@link ImageSupervisor} child reopens it
 * when its handle is lost), binds the listeners, serves, and on
 * {@link Stop} drains the connections, closes the backend and stops. The result of starting
 * ({@link Started} or {@link Failed}) and of stopping ({@link Stopped}) goes to {@code reportTo}.
 */
public final class ExportGuardian {
    private ExportGuardian() {
    }

    /** What to serve and where. {@code createSize} is -1 unless a missing file image should be created. */
    public record Params(ImageSpec image, boolean readOnly, long createSize, String name, List<Path> sockets,
                         List<Listen> listens) {
    }

    public record Listen(String host, int port) {
    }

    public interface Command {
    }

    /** Drain and stop. */
    public record Stop() implements Command {
    }

    private record Drained() implements Command {
    }

    private record Closed(Throwable failure) implements Command {
    }

    /** The image supervisor logs these itself; nothing more to do with them yet. */
    private record FromImage(ImageSupervisor.Report report) implements Command {
    }

    public interface Report {
    }

    /** Serving; one URI per listener, in the order given. */
    public record Started(List<String> uris) implements Report {
    }

    /** Could not start; nothing is left open. */
    public record Failed(String reason) implements Report {
    }

    /** Stopped after a drain; {@code clean} is false when closing the backend failed. */
    public record Stopped(boolean clean) implements Report {
    }

    /**
     * A root behavior for a process that serves one export: runs the guardian as its child,
     * hands every {@link Report} to {@code listener} (on an actor thread), forwards {@link Stop},
     * and stops the actor system once the guardian has stopped.
     */
    public static Behavior<Command> root(Params params, EngineSettings settings,
                                         java.util.function.Consumer<Report> listener) {
        return Behaviors.setup(ctx -> {
            ActorRef<Report> reports = ctx.spawn(Behaviors.<Report>receiveMessage(r -> {
                listener.accept(r);
                return Behaviors.same();
            }), "reports");
            ActorRef<Command> export = ctx.spawn(create(params, settings, reports), "export");
            ctx.watch(export);
            return Behaviors.receive(Command.class)
                    .onMessage(Stop.class, stop -> {
                        export.tell(stop);
                        return Behaviors.same();
                    })
                    .onSignal(org.apache.pekko.actor.typed.Terminated.class, t -> Behaviors.stopped())
                    .build();
        });
    }

    /** Commands that may arrive while the image is being opened; they are handled once it is. */
    private static final int STASH = 16;

    private record Opened(ImageSupervisor.OpenResult result) implements Command {
    }

    public static Behavior<Command> create(Params params, EngineSettings settings, ActorRef<Report> reportTo) {
        return Behaviors.setup(ctx -> Behaviors.withStash(STASH, stash -> {
            ctx.setLoggerName(ExportGuardian.class);
            ReopenSettings reopen = ReopenSettings.from(ctx.getSystem().settings().config());
            ActorSystem<Void> system = ctx.getSystem();
            return ImageSupervisor.opening(ctx, stash, reopen, () -> Backends.open(params.image(),
                            params.readOnly(), params.createSize(), system.settings().config(), system,
                            settings.fileIoDispatcher()),
                    Opened.class, Opened::new, Opened::result,
                    backend -> opened(ctx, backend, params, settings, reopen, reportTo),
                    why -> reportTo.tell(new Failed(why)));
        }));
    }

    /** The image is open: supervise it and listen. */
    private static Behavior<Command> opened(ActorContext<Command> ctx, BlockBackend backend, Params params,
                                            EngineSettings settings, ReopenSettings reopen, ActorRef<Report> reportTo) {
        ActorSystem<Void> system = ctx.getSystem();
        BlockBackend image = ImageSupervisor.supervise(ctx, "image", backend, // reopens: never creates the file
                () -> Backends.open(params.image(), params.readOnly(), -1, system.settings().config(), system,
                            settings.fileIoDispatcher()),
                reopen,
                ctx.messageAdapter(ImageSupervisor.Report.class, FromImage::new));
        ExportServer server;
        try {
            server = new ExportServer(ctx.getSystem(), settings, new Export(params.name(), image, params.readOnly()));
        } catch (IOException e) {
            image.close().toCompletableFuture().join();
            reportTo.tell(new Failed(e.getMessage()));
            return Behaviors.stopped();
        }
        List<String> uris = new ArrayList<>();
        try {
            for (Path p : params.sockets()) {
                uris.add(server.bindUnix(p));
            }
            for (Listen l : params.listens()) {
                uris.add(server.bindTcp(l.host(), l.port()));
            }
        } catch (IOException e) {
            server.close();
            image.close().toCompletableFuture().join();
            reportTo.tell(new Failed("cannot listen: " + e.getMessage()));
            return Behaviors.stopped();
        }
        reportTo.tell(new Started(List.copyOf(uris)));
        return serving(ctx, server, image, Duration.ofMillis(settings.drainTimeoutMillis()), reportTo);
    }

    private static Behavior<Command> serving(ActorContext<Command> ctx, ExportServer server, BlockBackend backend,
                                             Duration drainTimeout, ActorRef<Report> reportTo) {
        return Behaviors.receive(Command.class)
                .onMessage(Stop.class, stop -> {
                    ctx.getLog().info("draining {} connection(s) of {} (at most {})", server.connectionCount(),
                            backend.describe(), drainTimeout);
                    ctx.pipeToSelf(server.drain(drainTimeout), (done, failure) -> new Drained());
                    return stopping(ctx, server, backend, reportTo);
                })
                .onMessage(FromImage.class, m -> Behaviors.same())
                .onSignal(PostStop.class, signal -> {
                    server.close(); // stopped from outside without a drain
                    backend.close();
                    return Behaviors.same();
                })
                .build();
    }

    private static Behavior<Command> stopping(ActorContext<Command> ctx, ExportServer server, BlockBackend backend,
                                              ActorRef<Report> reportTo) {
        return Behaviors.receive(Command.class)
                .onMessage(Stop.class, stop -> Behaviors.same())
                .onMessage(FromImage.class, m -> Behaviors.same())
                .onMessage(Drained.class, drained -> {
                    ctx.pipeToSelf(backend.close(), (done, failure) -> new Closed(failure));
                    return Behaviors.same();
                })
                .onMessage(Closed.class, closed -> {
                    if (closed.failure() != null) {
                        ctx.getLog().error("closing {} failed: {}", backend.describe(), closed.failure().toString());
                    }
                    server.close();
                    reportTo.tell(new Stopped(closed.failure() == null));
                    return Behaviors.stopped();
                })
                .build();
    }
}
