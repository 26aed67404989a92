package io.rbdnbd.actors.daemon;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigValue;
import io.rbdnbd.actors.ReopenSettings;
import io.rbdnbd.engine.backend.CephSettings;
import io.rbdnbd.engine.stream.EngineSettings;

import java.util.Map;

/**
 * Checks a loaded configuration before the daemon starts, so that a broken file stops it at once
 * with the file, the line, the key and what is wrong, rather than when a device first needs the
 * setting: every {@code rbdnbd} key must be one reference.conf knows (a misspelt key would
 * otherwise be ignored silently), and every section must read.
 */
public final class ConfigCheck {
    private ConfigCheck() {
    }

    /** @throws ConfigException the first problem found */
    public static void check(Config config, Config reference) {
        for (Map.Entry<String, ConfigValue> e : config.getConfig("rbdnbd").entrySet()) {
            String path = "rbdnbd." + e.getKey();
            if (!reference.hasPathOrNull(path) && !free(path)) {
                throw new ConfigException.BadPath(e.getValue().origin(), path,
                        "unknown setting (the settings and their meaning are in reference.conf)");
            }
        }
        config.checkValid(reference, "rbdnbd"); // every value of the type its default has
        EngineSettings.from(config);
        config.getBoolean("rbdnbd.kernel.netlink");
        config.getDuration("rbdnbd.kernel.size-poll-interval");
        io.rbdnbd.engine.quiesce.QuiesceHook.Settings.from(config);
        ReopenSettings.from(config);
        CephSettings.from(config);
        DaemonSettings.from(config);
        io.rbdnbd.actors.jmx.JmxSettings.from(config);
    }

    /** Maps whose keys are the user's: Ceph options, device lists, dispatcher tuning. */
    private static boolean free(String path) {
        return path.startsWith("rbdnbd.ceph.options.") || path.startsWith("rbdnbd.daemon.devices")
                || path.startsWith("rbdnbd.daemon.device-defaults.ceph.") || path.contains("dispatcher");
    }
}
