package io.rbdnbd.actors.daemon;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/** The {@code rbdnbd.daemon} section of the configuration (documented in reference.conf). */
public record DaemonSettings(Path runDirectory, Duration mapTimeout, Duration idleLinger, Config deviceDefaults,
                             List<DeviceRequest> devices) {

    public Path controlSocket() {
        return runDirectory.resolve("control.sock");
    }

    public Path lockFile() {
        return runDirectory.resolve("daemon.lock");
    }

    /** @throws ConfigException naming the file, line and key of what is wrong */
    public static DaemonSettings from(Config root) {
        Config c = root.getConfig("rbdnbd.daemon");
        Config defaults = c.getConfig("device-defaults");
        List<DeviceRequest> devices = new ArrayList<>();
        for (Config entry : c.getConfigList("devices")) {
            if (!entry.hasPath("image")) {
                throw new ConfigException.Missing(entry.origin(), "rbdnbd.daemon.devices[].image");
            }
            devices.add(DeviceRequest.from(entry, defaults));
        }
        Duration mapTimeout = c.getDuration("map-timeout");
        if (mapTimeout.isNegative() || mapTimeout.isZero()) {
            throw new ConfigException.BadValue(c.getValue("map-timeout").origin(), "rbdnbd.daemon.map-timeout",
                    "must be positive");
        }
        return new DaemonSettings(Path.of(c.getString("run-directory")), mapTimeout, c.getDuration("idle-linger"),
                defaults, List.copyOf(devices));
    }
}
