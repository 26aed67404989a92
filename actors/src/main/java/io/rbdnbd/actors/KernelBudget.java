package io.rbdnbd.actors;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import io.rbdnbd.engine.stream.EngineSettings;
import io.rbdnbd.engine.stream.InFlightBudget;
import io.rbdnbd.engine.stream.MemoryBound;
import org.apache.pekko.actor.AbstractExtensionId;
import org.apache.pekko.actor.ClassicActorSystemProvider;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.Extension;

/**
 * What the kernel devices of one process hold together ({@code rbdnbd.kernel.max-devices},
 * {@code rbdnbd.kernel.max-in-flight-bytes}): each device's in-flight budget draws on this one, so
 * however many devices the kernel loads at once, the daemon's heap stays within its bound.
 */
public final class KernelBudget implements Extension {
    private static final AbstractExtensionId<KernelBudget> ID = new AbstractExtensionId<>() {
        @Override
        public KernelBudget createExtension(ExtendedActorSystem system) {
            return new KernelBudget(system.settings().config());
        }
    };

    private final int maxDevices;
    private final InFlightBudget inFlight;

    private KernelBudget(Config root) {
        this.maxDevices = maxDevices(root);
        this.inFlight = new InFlightBudget(maxInFlightBytes(root));
    }

    public static KernelBudget of(ClassicActorSystemProvider system) {
        return ID.get(system.classicSystem());
    }

    public int maxDevices() {
        return maxDevices;
    }

    /** A new device's budget: at most rbdnbd.engine.max-in-flight-bytes of its own, drawn from the shared one. */
    InFlightBudget deviceBudget(EngineSettings settings) {
        return new InFlightBudget(settings.maxInFlightBytes(), inFlight);
    }

    /** Heap and direct memory the kernel devices of a process with this configuration may need. */
    public static MemoryBound bound(Config root) {
        return MemoryBound.kernelDevices(EngineSettings.from(root), maxDevices(root), KernelConnection.NETLINK_SOCKETS,
                maxInFlightBytes(root));
    }

    private static int maxDevices(Config root) {
        int n = root.getInt("rbdnbd.kernel.max-devices");
        if (n < 1) {
            throw new ConfigException.BadValue(root.getValue("rbdnbd.kernel.max-devices").origin(),
                    "rbdnbd.kernel.max-devices", "must be at least 1");
        }
        return n;
    }

    private static long maxInFlightBytes(Config root) {
        long n = root.getBytes("rbdnbd.kernel.max-in-flight-bytes");
        if (n < 1) {
            throw new ConfigException.BadValue(root.getValue("rbdnbd.kernel.max-in-flight-bytes").origin(),
                    "rbdnbd.kernel.max-in-flight-bytes", "must be positive");
        }
        return n;
    }
}
