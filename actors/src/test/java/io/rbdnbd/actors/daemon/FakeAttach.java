package io.rbdnbd.actors.daemon;

import io.rbdnbd.actors.DeviceSupervisor;
import io.rbdnbd.actors.KernelAttach;
import io.rbdnbd.engine.backend.BlockBackend;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.util.ByteString;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Stands in for the kernel in the daemon's TestKit tests: "attaches" at once to the requested or
 * the next /dev/nbdN, reports as {@link KernelAttach} does, and lets the test do I/O on the
 * device's backend or make the device's connection die.
 */
final class FakeAttach implements DeviceSupervisor.Attacher {
    /** Writes then reads back through the device's backend; replies whether the data came back. */
    record Io(long offset, ByteString data, ActorRef<Boolean> replyTo) implements KernelAttach.Command {
    }

    /** The connection dies, as when the kernel side goes away. */
    record Die(String why) implements KernelAttach.Command {
    }

    private final boolean netlink;
    private final AtomicInteger next = new AtomicInteger();
    final Map<String, ActorRef<KernelAttach.Command>> devices = new ConcurrentHashMap<>();
    final Map<String, String> lastCommand = new ConcurrentHashMap<>();

    FakeAttach(boolean netlink) {
        this.netlink = netlink;
    }

    @Override
    public Behavior<KernelAttach.Command> create(KernelAttach.Params params, BlockBackend backend,
                                                 io.rbdnbd.engine.stream.IoStats stats,
                                                 io.rbdnbd.engine.stream.EngineSettings settings,
                                                 ActorRef<KernelAttach.Report> reportTo) {
        return Behaviors.setup(ctx -> {
            String device = params.device() != null ? params.device() : "/dev/nbd" + next.getAndIncrement();
            devices.put(device, ctx.getSelf());
            reportTo.tell(new KernelAttach.Ready(device, netlink));
            return Behaviors.receive(KernelAttach.Command.class)
                    .onMessage(Io.class, io -> {
                        backend.write(io.offset(), io.data(), false)
                                .thenCompose(v -> backend.read(io.offset(), io.data().size()))
                                .whenComplete((d, t) -> io.replyTo().tell(t == null && d.equals(io.data())));
                        return Behaviors.same();
                    })
                    .onMessage(Die.class, d -> gone(device, d.why(), reportTo))
                    .onMessage(KernelAttach.Disconnect.class, d -> gone(device, "unmapped", reportTo))
                    .onMessage(KernelAttach.Abort.class, d -> gone(device, "unmapped (forced)", reportTo))
                    .onMessage(KernelAttach.Detach.class, d -> gone(device, "detached", reportTo))
                    .onMessage(KernelAttach.Stop.class, d -> gone(device, netlink ? "detached" : "unmapped", reportTo))
                    .build();
        });
    }

    private Behavior<KernelAttach.Command> gone(String device, String why, ActorRef<KernelAttach.Report> reportTo) {
        lastCommand.put(device, why);
        devices.remove(device);
        reportTo.tell(new KernelAttach.Detached(device, why));
        return Behaviors.stopped();
    }
}
