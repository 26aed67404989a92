package io.rbdnbd.actors.daemon;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import io.rbdnbd.engine.backend.ImageSpec;

import java.nio.file.Path;

/**
 * One device the daemon is asked to map: from {@code map} over the control socket, from
 * {@code rbdnbd.daemon.devices} in the configuration, or from JMX. Its HOCON form (keys and
 * defaults in {@code rbdnbd.daemon.device-defaults}, reference.conf) is the one way these are
 * written down; the parsed form is checked at once, so a bad entry is refused with its key.
 *
 * @param spec             the image as given (listed back by list-mapped)
 * @param image            the parsed image with its open options (exclusive, snapshot id, LUKS)
 * @param device           {@code /dev/nbdN}, or null for the first free device
 * @param createSize       file: images only, the size to create a missing file with; -1 none
 * @param cookie           the netlink backend identifier; null: a new random one
 * @param attach           take over {@code device}, whose server died (netlink re-attach)
 * @param quiesce          run a hook as {@code HOOK DEV quiesce|unquiesce} around snapshots
 * @param quiesceHook      that hook; null: rbdnbd.quiesce.hook
 * @param ceph             this device's {@code rbdnbd.ceph} overrides (client id, conf, keyring, ...)
 * @param logFile          a file that gets this device's log lines too; null: none
 */
public record DeviceRequest(String spec, ImageSpec image, String device, boolean readOnly, boolean trim,
                            int ioTimeoutSeconds, int reattachTimeoutSeconds, long createSize, String cookie,
                            boolean attach, boolean quiesce, String quiesceHook, Config ceph, Path logFile) {

    /** Where the keys' defaults are, in reference.conf. */
    public static final String DEFAULTS = "rbdnbd.daemon.device-defaults";

    /**
     * Reads one device entry, its missing keys taken from {@code defaults}.
     *
     * @throws ConfigException naming the entry's origin (file and line, or "map command line"),
     *                         the key and what is wrong
     */
    public static DeviceRequest from(Config entry, Config defaults) {
        for (String key : entry.root().keySet()) {
            if (!defaults.hasPathOrNull(key)) {
                throw new ConfigException.BadPath(entry.root().get(key).origin(), key,
                        "unknown device setting (known: " + String.join(", ", defaults.root().keySet()) + ")");
            }
        }
        Config c = entry.withFallback(defaults);
        String spec = c.getString("image");
        ImageSpec image;
        try {
            image = ImageSpec.parse(spec);
        } catch (IllegalArgumentException e) {
            throw bad(c, "image", e.getMessage());
        }
        String device = blankToNull(c.getString("device"));
        if (device != null && !device.matches("/dev/nbd\\d+")) {
            throw bad(c, "device", "wants /dev/nbdN or \"\" for the first free one, got '" + device + "'");
        }
        boolean attach = c.getBoolean("attach");
        if (attach && device == null) {
            throw bad(c, "attach", "attach needs the device whose server died (device = /dev/nbdN)");
        }
        String encryption = blankToNull(c.getString("encryption-format"));
        String passphrase = blankToNull(c.getString("encryption-passphrase-file"));
        long snapId = c.getLong("snap-id");
        try {
            image = ImageSpec.withOpenOptions(image, c.getBoolean("exclusive"), snapId, encryption,
                    passphrase == null ? null : Path.of(passphrase));
        } catch (IllegalArgumentException e) {
            throw bad(c, "image", e.getMessage());
        }
        Config ceph = c.getConfig("ceph");
        if (!ceph.isEmpty() && !(image instanceof ImageSpec.Rbd)) {
            throw bad(c, "ceph", "Ceph options apply to RBD images only, not " + image);
        }
        long size = c.getIsNull("size") ? -1 : c.getBytes("size");
        boolean quiesce = c.getBoolean("quiesce");
        String hook = c.getString("quiesce-hook");
        if (quiesce && !(image instanceof ImageSpec.Rbd)) {
            throw bad(c, "quiesce", "quiesce needs an RBD image (snapshots are what it waits for)");
        }
        return new DeviceRequest(spec, image, device, c.getBoolean("read-only"), c.getBoolean("trim"),
                seconds(c, "io-timeout"), seconds(c, "reattach-timeout"), size, blankToNull(c.getString("cookie")),
                attach, quiesce, blankToNull(hook), ceph,
                blankToNull(c.getString("log-file")) == null ? null : Path.of(c.getString("log-file")).toAbsolutePath());
    }

    /** The daemon's configuration with this device's Ceph overrides laid over it. */
    public Config deviceConfig(Config daemon) {
        return ceph.isEmpty() ? daemon : ceph.atPath("rbdnbd.ceph").withFallback(daemon);
    }

    /** Parses one line of the control protocol; {@code origin} names where it came from in errors. */
    public static Config parse(String line, String origin) {
        return ConfigFactory.parseString(line, com.typesafe.config.ConfigParseOptions.defaults().setOriginDescription(origin));
    }

    /** A config value of this form, for builders. */
    public static Config entry(java.util.Map<String, ?> values, String origin) {
        Config c = ConfigFactory.empty(origin);
        for (java.util.Map.Entry<String, ?> e : values.entrySet()) {
            c = c.withValue(e.getKey(), ConfigValueFactory.fromAnyRef(e.getValue(), origin));
        }
        return c;
    }

    private static int seconds(Config c, String key) {
        long s;
        try {
            s = c.getInt(key); // Ceph's options are whole seconds
        } catch (ConfigException.WrongType e) {
            s = c.getDuration(key).toSeconds();
        }
        if (s < 0 || s > Integer.MAX_VALUE) {
            throw bad(c, key, "wants whole seconds >= 0, got " + s);
        }
        return (int) s;
    }

    private static ConfigException bad(Config c, String key, String what) {
        return new ConfigException.BadValue(c.hasPath(key) ? c.getValue(key).origin() : c.origin(), key, what);
    }

    private static String blankToNull(String s) {
        return s == null || s.isBlank() ? null : s;
    }
}
