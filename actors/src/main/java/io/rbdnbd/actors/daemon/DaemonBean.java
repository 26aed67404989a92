package io.rbdnbd.actors.daemon;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import io.rbdnbd.actors.jmx.DaemonMXBean;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Scheduler;
import org.apache.pekko.actor.typed.javadsl.AskPattern;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletionException;

/** The daemon's MXBean: each operation one request to {@link DaemonGuardian}, as the control socket makes. */
public final class DaemonBean implements DaemonMXBean {
    private final ActorRef<DaemonGuardian.Command> daemon;
    private final Scheduler scheduler;
    private final Config deviceDefaults;
    private final Duration timeout;

    public DaemonBean(ActorRef<DaemonGuardian.Command> daemon, Scheduler scheduler, Config deviceDefaults,
                      Duration mapTimeout) {
        this.daemon = daemon;
        this.scheduler = scheduler;
        this.deviceDefaults = deviceDefaults;
        this.timeout = mapTimeout.plusSeconds(5);
    }

    @Override
    public List<String> getDevices() {
        return this.<DaemonGuardian.Listing>ask(DaemonGuardian.ListDevices::new).devices().stream()
                .map(DaemonGuardian.Device::device).toList();
    }

    @Override
    public String map(String image, String options) {
        DeviceRequest request;
        try {
            Config entry = ConfigFactory.parseString(options == null ? "" : options,
                            com.typesafe.config.ConfigParseOptions.defaults().setOriginDescription("JMX map options"))
                    .withValue("image", ConfigValueFactory.fromAnyRef(image, "JMX map image"));
            request = DeviceRequest.from(entry, deviceDefaults);
        } catch (ConfigException e) {
            throw new IllegalArgumentException(e.getMessage());
        }
        DaemonGuardian.MapReply r = ask(to -> new DaemonGuardian.Map(request, to));
        if (r.error() != null) {
            throw new IllegalStateException(r.error());
        }
        return r.device();
    }

    @Override
    public void unmap(String deviceOrImage, boolean force) {
        check(this.<DaemonGuardian.Reply>ask(to -> new DaemonGuardian.Unmap(deviceOrImage, -1, force, to)));
    }

    @Override
    public void detach(String deviceOrImage) {
        check(this.<DaemonGuardian.Reply>ask(to -> new DaemonGuardian.Detach(deviceOrImage, -1, to)));
    }

    private static void check(DaemonGuardian.Reply r) {
        if (r.error() != null) {
            throw new IllegalStateException(r.error());
        }
    }

    private <T> T ask(org.apache.pekko.japi.function.Function<ActorRef<T>, DaemonGuardian.Command> message) {
        try {
            return AskPattern.ask(daemon, message, timeout, scheduler).toCompletableFuture().join();
        } catch (CompletionException e) {
            throw new IllegalStateException("the daemon did not answer within " + timeout.toSeconds() + " s");
        }
    }
}
