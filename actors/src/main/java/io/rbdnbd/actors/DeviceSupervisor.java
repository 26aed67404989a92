package io.rbdnbd.actors;

import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.engine.backend.Backends;
import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.IoStats;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

import java.time.Duration;
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

    /** @param sizePollInterval how often the image's size is asked for (a resize then reaches the kernel) */
    public record Params(ImageSpec image, long createSize, KernelAttach.Params attach, Duration sizePollInterval) {
    }

    public interface Command {
    }

    /** Disconnect the device, then close the image. */
    public record Unmap() implements Command {
    }

    private record FromAttach(KernelAttach.Report report) implements Command {
    }

    private record BackendClosed(Throwable failure) implements Command {
    }

    private record CheckSize() implements Command {
    }

    private record SizeIs(long size, Throwable failure) implements Command {
    }

    private record FromImage(ImageSupervisor.Report report) implements Command {
    }

    public interface Report {
    }

    /** @param stats the device's I/O statistics, live (for JMX and {@code rbd-nbd stats}) */
    public record Mapped(String device, IoStats stats) implements Report {
    }

    public record MapFailed(String reason) implements Report {
    }

    public record Unmapped(String device, String why, boolean clean) implements Report {
    }

    public static Behavior<Command> create(Params params, EngineSettings settings, Consumer<Report> listener) {
        return Behaviors.setup(ctx -> {
            ReopenSettings reopen = ReopenSettings.from(ctx.getSystem().settings().config());
            BlockBackend backend;
            try {
                backend = Backends.open(params.image(), params.attach().readOnly(), params.createSize(),
                        ctx.getSystem(), settings);
            } catch (BackendException | IllegalArgumentException e) {
                listener.accept(new MapFailed(e.getMessage()));
                return Behaviors.stopped();
            }
            ActorSystem<Void> system = ctx.getSystem();
            BlockBackend image = ImageSupervisor.supervise(ctx, "image", backend, // reopens: never creates the file
                    () -> Backends.open(params.image(), params.attach().readOnly(), -1, system, settings), reopen,
                    ctx.messageAdapter(ImageSupervisor.Report.class, FromImage::new));
            ActorRef<KernelAttach.Report> adapter = ctx.messageAdapter(KernelAttach.Report.class, FromAttach::new);
            IoStats stats = new IoStats();
            ActorRef<KernelAttach.Command> attach = ctx.spawn(
                    KernelAttach.create(params.attach(), image, stats, settings, adapter), "kernel-attach");
            return Behaviors.withTimers(timers -> {
                timers.startTimerWithFixedDelay(new CheckSize(), params.sizePollInterval());
                return new Running(ctx, image, stats, attach, listener).behavior();
            });
        });
    }

    /** Attached (or attaching): relays unmap, follows the image's size, ends when the device is gone. */
    private static final class Running {
        private final ActorContext<Command> ctx;
        private final BlockBackend backend;
        private final IoStats stats;
        private final ActorRef<KernelAttach.Command> attach;
        private final Consumer<Report> listener;
        private String device;
        private long size;

        Running(ActorContext<Command> ctx, BlockBackend backend, IoStats stats, ActorRef<KernelAttach.Command> attach,
                Consumer<Report> listener) {
            this.ctx = ctx;
            this.backend = backend;
            this.stats = stats;
            this.attach = attach;
            this.listener = listener;
            this.size = backend.size();
        }

        Behavior<Command> behavior() {
            return Behaviors.receive(Command.class)
                    .onMessage(Unmap.class, u -> {
                        attach.tell(new KernelAttach.Disconnect());
                        return Behaviors.same();
                    })
                    .onMessage(CheckSize.class, c -> {
                        ctx.pipeToSelf(backend.refreshSize(), (n, failure) -> new SizeIs(n == null ? -1 : n, failure));
                        return Behaviors.same();
                    })
                    .onMessage(SizeIs.class, s -> {
                        if (s.failure() != null) {
                            ctx.getLog().warn("cannot read the size of {}: {}", backend.describe(), s.failure().toString());
                        } else if (s.size() != size && device != null) {
                            ctx.getLog().info("{} changed size from {} to {} bytes", backend.describe(), size, s.size());
                            size = s.size();
                            attach.tell(new KernelAttach.Resize(size));
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
                            listener.accept(new Mapped(ready.device(), stats));
                            return Behaviors.same();
                        }
                        String why = r instanceof KernelAttach.Detached d ? d.why()
                                : ((KernelAttach.AttachFailed) r).reason();
                        ctx.pipeToSelf(backend.close(), (done, failure) -> new BackendClosed(failure));
                        return closing(ctx, listener, device, why, r instanceof KernelAttach.AttachFailed);
                    })
                    .build();
        }
    }

    private static Behavior<Command> closing(ActorContext<Command> ctx, Consumer<Report> listener, String device,
                                             String why, boolean neverMapped) {
        return Behaviors.receive(Command.class)
                .onMessage(Unmap.class, u -> Behaviors.same())
                .onMessage(CheckSize.class, c -> Behaviors.same())
                .onMessage(SizeIs.class, s -> Behaviors.same())
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
