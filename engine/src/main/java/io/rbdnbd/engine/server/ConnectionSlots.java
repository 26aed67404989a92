package io.rbdnbd.engine.server;

import org.apache.pekko.actor.AbstractExtensionId;
import org.apache.pekko.actor.ClassicActorSystemProvider;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.Extension;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * Client connections of every export server in this process together, bounded by
 * {@code rbdnbd.engine.export.max-connections}: each takes a thread for its handshake, then two
 * for its transmission and its buffers, so their number is what the process can promise to hold.
 */
public final class ConnectionSlots implements Extension {
    private static final AbstractExtensionId<ConnectionSlots> ID = new AbstractExtensionId<>() {
        @Override
        public ConnectionSlots createExtension(ExtendedActorSystem system) {
            return new ConnectionSlots(ExportLimits.from(system.settings().config()).maxConnections());
        }
    };

    private final int max;
    private final AtomicInteger taken = new AtomicInteger();

    ConnectionSlots(int max) {
        this.max = max;
    }

    public static ConnectionSlots of(ClassicActorSystemProvider system) {
        return ID.get(system.classicSystem());
    }

    /** Takes a slot; false when all are taken. */
    boolean tryTake() {
        while (true) {
            int t = taken.get();
            if (t >= max) {
                return false;
            }
            if (taken.compareAndSet(t, t + 1)) {
                return true;
            }
        }
    }

    void give() {
        taken.decrementAndGet();
    }

    public int taken() {
        return taken.get();
    }

    public int max() {
        return max;
    }
}
