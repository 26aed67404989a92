package io.rbdnbd.actors;

import io.rbdnbd.engine.backend.BackendException;
import io.rbdnbd.engine.backend.Backends;
import io.rbdnbd.engine.backend.BlockBackend;
import io.rbdnbd.engine.backend.ImageSpec;
import io.rbdnbd.engine.stream.EngineSettings;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;

import java.util.function.Consumer;

/**
 * One mapped device: owns the image's backend and the {@link KernelAttach} child that connects
 * it to /dev/nbdN. Reports {@link Mapped} once the device is usable and {@link Unmapped} when it
 * is gone and the backend is closed (flushed).
 */
public final class DeviceSupervisor {
    private DeviceSupervisor() {
    }

    public record Params(ImageSpec image, long createSize, KernelAttach.Params attach) {
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

    public interface Report {
    }

    public record Mapped(String device) implements Report {
    }

    public record MapFailed(String reason) implements Report {
    }

    public record Unmapped(String device, String why, boolean clean) implements Report {
    }

    public static Behavior<Command> create(Params params, EngineSettings settings, Consumer<Report> listener) {
        return Behaviors.setup(ctx -> {
            BlockBackend backend;
            try {
                backend = Backends.open(params.image(), params.attach().readOnly(), params.createSize(),
                        ctx.getSystem(), settings);
            } catch (BackendException e) {
                listener.accept(new MapFailed(e.getMessage()));
                return Behaviors.stopped();
            }
            ActorRef<KernelAttach.Report> adapter = ctx.messageAdapter(KernelAttach.Report.class, FromAttach::new);
            ActorRef<KernelAttach.Command> attach = ctx.spawn(
                    KernelAttach.create(params.attach(), backend, settings, adapter), "kernel-attach");
            return running(ctx, backend, attach, listener, null);
        });
    }

    private static Behavior<Command> running(ActorContext<Command> ctx, BlockBackend backend,
                                             ActorRef<KernelAttach.Command> attach, Consumer<Report> listener,
                                             String device) {
        return Behaviors.receive(Command.class)
                .onMessage(Unmap.class, u -> {
                    attach.tell(new KernelAttach.Disconnect());
                    return Behaviors.same();
                })
                .onMessage(FromAttach.class, m -> {
                    KernelAttach.Report r = m.report();
                    if (r instanceof KernelAttach.Ready ready) {
                        listener.accept(new Mapped(ready.device()));
                        return running(ctx, backend, attach, listener, ready.device());
                    }
                    String why = r instanceof KernelAttach.Detached d ? d.why()
                            : ((KernelAttach.AttachFailed) r).reason();
                    ctx.pipeToSelf(backend.close(), (done, failure) -> new BackendClosed(failure));
                    return closing(ctx, listener, device, why, r instanceof KernelAttach.AttachFailed);
                })
                .build();
    }

    private static Behavior<Command> closing(ActorContext<Command> ctx, Consumer<Report> listener, String device,
                                             String why, boolean neverMapped) {
        return Behaviors.receive(Command.class)
                .onMessage(Unmap.class, u -> Behaviors.same())
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
