package io.rbdnbd.actors;

import com.typesafe.config.Config;
import io.rbdnbd.engine.backend.Backends;
import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.engine.quiesce.QuiesceHook;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.IoStats;
import io.rbdnbd.engine.backend.ReopenableBackend;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.function.Consumer;

/**
 * One mapped device: owns the image's backend, the {@link ImageSupervisor} child that reopens it
 * when its handle is lost, and the {@link KernelAttach} child that connects it to /dev/nbdN.
 * Reports {@link Mapped} once the device is usable and {@link Unmapped} when it is gone and the
 * backend is closed (flushed). Keeps the device's {@link IoStats}, which its connections record
 * into, for as long as it lives.
 */
public final class DeviceSupervisor {
    private DeviceSupervisor() {
    }

    /**
     * @param sizePollInterval how often the image's size is asked for (a resize then reaches the kernel)
     * @param config           the device's configuration: the daemon's, with its own Ceph options over it
     * @param attacher         what connects the image to a device: {@link KernelAttach} but in tests
     * @param quiesce          run this hook around snapshots of the image (Ceph's --quiesce); null: none
     */
    public record Params(ImageSpec image, long createSize, KernelAttach.Params attach, Duration sizePollInterval,
                         Config config, Attacher attacher, QuiesceHook.Settings quiesce) {
    }

    /** Makes the actor that connects an image to a device and reports as {@link KernelAttach} does. */
    @FunctionalInterface
    public interface Attacher {
        Behavior<KernelAttach.Command> create(KernelAttach.Params params, BlockBackend backend, IoStats stats,
                                              EngineSettings settings, ActorRef<KernelAttach.Report> reportTo);
    }

    /** The kernel's NBD driver. */
    public static final Attacher KERNEL = KernelAttach::create;

    public interface Command {
    }

    /** Disconnect the device, then close the image. */
    public record Unmap() implements Command {
    }

    /** {@link KernelAttach.Detach}, then close the image. */
    public record Detach() implements Command {
    }

    /** {@link KernelAttach.Stop} (SIGTERM), then close the image. */
    public record Stop() implements Command {
    }

    /** {@link KernelAttach.Abort} (unmap --force), then close the image. */
    public record ForceUnmap() implements Command {
    }

    private record FromAttach(KernelAttach.Report report) implements Command {
    }

    private record BackendClosed(Throwable failure) implements Command {
    }

    private record CheckSize() implements Command {
    }

    private record SizeIs(long size, Throwable failure) implements Command {
    }

    /** The image says it has a new size; {@code applied} completes once the kernel has it (librbd waits). */
    private record Resized(long size, CompletableFuture<Void> applied) implements Command {
    }

    private record FromImage(ImageSupervisor.Report report) implements Command {
    }

    public interface Report {
    }

    /**
     * @param netlink the device can be detached and re-attached
     * @param stats   the device's I/O statistics, live (for JMX and {@code rbd-nbd stats})
     * @param image   the device's image, live (size, reopens, last loss)
     */
    public record Mapped(String device, String cookie, boolean netlink, IoStats stats, ReopenableBackend image)
            implements Report {
    }

    public record MapFailed(String reason) implements Report {
    }

    public record Unmapped(String device, String why, boolean clean) implements Report {
    }

    /** Commands that may arrive while the image is being opened; they are handled once it is. */
    private static final int STASH = 64;

    private record Opened(ImageSupervisor.OpenResult result) implements Command {
    }

    public static Behavior<Command> create(Params params, EngineSettings settings, Consumer<Report> listener) {
        return Behaviors.setup(ctx -> Behaviors.withStash(STASH, stash -> {
            ctx.setLoggerName(DeviceSupervisor.class);
            ReopenSettings reopen = ReopenSettings.from(ctx.getSystem().settings().config());
            ActorSystem<Void> system = ctx.getSystem();
            return ImageSupervisor.opening(ctx, stash, reopen, () -> Backends.open(params.image(),
                            params.attach().readOnly(), params.createSize(), params.config(), system,
                            settings.fileIoDispatcher()),
                    Opened.class, Opened::new, Opened::result,
                    backend -> opened(ctx, backend, params, settings, reopen, listener),
                    why -> listener.accept(new MapFailed(why)));
        }));
    }

    /** The image is open: supervise it, attach it to the kernel, follow its size. */
    private static Behavior<Command> opened(ActorContext<Command> ctx, BlockBackend backend, Params params,
                                            EngineSettings settings, ReopenSettings reopen,
                                            Consumer<Report> listener) {
        ActorSystem<Void> system = ctx.getSystem();
        ReopenableBackend image = ImageSupervisor.supervise(ctx, "image", backend, // reopens: never creates the file
                () -> Backends.open(params.image(), params.attach().readOnly(), -1, params.config(), system,
                            settings.fileIoDispatcher()),
                reopen,
                ctx.messageAdapter(ImageSupervisor.Report.class, FromImage::new));
        ActorRef<KernelAttach.Report> adapter = ctx.messageAdapter(KernelAttach.Report.class, FromAttach::new);
        IoStats stats = new IoStats();
        ActorRef<KernelAttach.Command> attach = ctx.spawn(
                params.attacher().create(params.attach(), image, stats, settings, adapter), "kernel-attach");
        ActorRef<Command> self = ctx.getSelf();
        image.onResized(size -> { // on librbd's thread: rbd resize returns once the kernel has the size
            CompletableFuture<Void> applied = new CompletableFuture<>();
            self.tell(new Resized(size, applied));
            return applied;
        });
        return Behaviors.withTimers(timers -> {
            timers.startTimerWithFixedDelay(new CheckSize(), params.sizePollInterval());
            return new Running(ctx, image, stats, attach, params.attach().cookie(), params.quiesce(), listener,
                    system.dispatchers().lookup(DispatcherSelector.fromConfig(reopen.dispatcher()))).behavior();
        });
    }

    /** Attached (or attaching): relays unmap, follows the image's size, ends when the device is gone. */
    private static final class Running {
        private final ActorContext<Command> ctx;
        private final ReopenableBackend backend;
        private final IoStats stats;
        private final ActorRef<KernelAttach.Command> attach;
        private final Consumer<Report> listener;
        private final String cookie;
        private final QuiesceHook.Settings quiesce;
        /** Where blocking calls go (closing the quiesce watch waits for librbd). */
        private final Executor blocking;
        private AutoCloseable quiesceWatch;
        private String device;
        private long size;

        Running(ActorContext<Command> ctx, ReopenableBackend backend, IoStats stats, ActorRef<KernelAttach.Command> attach,
                String cookie, QuiesceHook.Settings quiesce, Consumer<Report> listener, Executor blocking) {
            this.ctx = ctx;
            this.cookie = cookie;
            this.quiesce = quiesce;
            this.blocking = blocking;
            this.backend = backend;
            this.stats = stats;
            this.attach = attach;
            this.listener = listener;
            this.size = backend.size();
        }

        Behavior<Command> behavior() {
            return Behaviors.receive(Command.class)
                    .onMessage(Unmap.class, u -> tellAttach(new KernelAttach.Disconnect()))
                    .onMessage(Detach.class, u -> tellAttach(new KernelAttach.Detach()))
                    .onMessage(Stop.class, u -> tellAttach(new KernelAttach.Stop()))
                    .onMessage(ForceUnmap.class, u -> tellAttach(new KernelAttach.Abort()))
                    .onMessage(CheckSize.class, c -> {
                        ctx.pipeToSelf(backend.refreshSize(), (n, failure) -> new SizeIs(n == null ? -1 : n, failure));
                        return Behaviors.same();
                    })
                    .onMessage(SizeIs.class, s -> {
                        if (s.failure() != null) {
                            ctx.getLog().warn("cannot read the size of {}: {}", backend.describe(), s.failure().toString());
                        } else {
                            resize(s.size(), null);
                        }
                        return Behaviors.same();
                    })
                    .onMessage(Resized.class, r -> {
                        if (!resize(r.size(), r.applied())) {
                            r.applied().complete(null);
                        }
                        return Behaviors.same();
                    })
                    .onMessage(FromImage.class, m -> {
                        if (m.report() instanceof ImageSupervisor.Reopened) {
                            ctx.getSelf().tell(new CheckSize()); // it may have been resized meanwhile
                        }
                        return Behaviors.same();
                    })
                    .onMessage(FromAttach.class, m -> {
                        KernelAttach.Report r = m.report();
                        if (r instanceof KernelAttach.Ready ready) {
                            device = ready.device();
                            if (quiesce != null) {
                                watchQuiesce();
                            }
                            listener.accept(new Mapped(ready.device(), cookie, ready.netlink(), stats, backend));
                            return Behaviors.same();
                        }
                        String why = r instanceof KernelAttach.Detached d ? d.why()
                                : ((KernelAttach.AttachFailed) r).reason();
                        AutoCloseable watch = quiesceWatch;
                        ctx.pipeToSelf(CompletableFuture.runAsync(() -> closeQuietly(watch), blocking)
                                .thenCompose(v -> backend.close()), (done, failure) -> new BackendClosed(failure));
                        return closing(ctx, listener, device, why, r instanceof KernelAttach.AttachFailed);
                    })
                    .build();
        }

        /**
         * Tells the kernel a new size; false when there is nothing to tell (the same size, or not
         * attached yet: attaching gives the kernel the image's size of then).
         */
        private boolean resize(long newSize, CompletableFuture<Void> applied) {
            if (newSize == size || device == null) {
                return false;
            }
            ctx.getLog().info("{} changed size from {} to {} bytes", backend.describe(), size, newSize);
            size = newSize;
            attach.tell(new KernelAttach.Resize(size, applied));
            return true;
        }

        /** The hook runs with the device's name, so the watch starts once the kernel has given it. */
        private void watchQuiesce() {
            try {
                quiesceWatch = backend.watchQuiesce(new QuiesceHook(quiesce, device)).orElse(null);
                if (quiesceWatch == null) {
                    ctx.getLog().warn("{}: {} has no snapshots to quiesce for; --quiesce ignored", device, backend.describe());
                } else {
                    ctx.getLog().info("{}: quiesce hook {} runs around snapshots", device, quiesce.hook());
                }
            } catch (RuntimeException e) {
                ctx.getLog().error("{}: cannot watch for snapshots (quiesce): {}", device, e.toString());
            }
        }

        private void closeQuietly(AutoCloseable watch) {
            if (watch != null) {
                try {
                    watch.close();
                } catch (Exception e) {
                    ctx.getLog().warn("{}: stopping the quiesce watch: {}", device, e.toString());
                }
            }
        }

        private Behavior<Command> tellAttach(KernelAttach.Command c) {
            attach.tell(c);
            return Behaviors.same();
        }
    }

    private static Behavior<Command> closing(ActorContext<Command> ctx, Consumer<Report> listener, String device,
                                             String why, boolean neverMapped) {
        return Behaviors.receive(Command.class)
                .onMessage(Unmap.class, u -> Behaviors.same())
                .onMessage(Detach.class, u -> Behaviors.same())
                .onMessage(Stop.class, u -> Behaviors.same())
                .onMessage(ForceUnmap.class, u -> Behaviors.same())
                .onMessage(CheckSize.class, c -> Behaviors.same())
                .onMessage(SizeIs.class, s -> Behaviors.same())
                .onMessage(Resized.class, r -> {
                    r.applied().complete(null); // the device is going: nothing to resize
                    return Behaviors.same();
                })
                .onMessage(FromImage.class, m -> Behaviors.same())
                .onMessage(BackendClosed.class, c -> {
                    if (c.failure() != null) {
                        ctx.getLog().error("closing the image failed: {}", c.failure().toString());
                    }
                    listener.accept(neverMapped ? new MapFailed(why) : new Unmapped(device, why, c.failure() == null));
                    return Behaviors.stopped();
                })
                .build();
    }
}
