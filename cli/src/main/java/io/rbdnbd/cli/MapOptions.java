package io.rbdnbd.cli;

import io.rbdnbd.engine.backend.ImageSpec;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Options of {@code map} and {@code attach}, as Ceph's rbd-nbd spells them. What they ask of the
 * device becomes a daemon device entry ({@link #deviceEntry()}); the rest is for this command:
 * printing the cookie, loading the nbd module.
 *
 * @param nbdsMax  the nbd module's nbds_max when this command loads it; 0: the module's default
 * @param maxPart  the nbd module's max_part when this command loads it; -1: the module's default
 * @param logFile  the device's own log file (its lines also go to the daemon's log); null: none
 * @param foreground {@code -f}/{@code -d}: the command stays until the device is unmapped, and
 *                   SIGTERM/SIGINT to it unmaps the device (Ceph's rbd-nbd not daemonizing)
 */
record MapOptions(String spec, ImageSpec image, String device, boolean readOnly, boolean noTrim, int ioTimeoutSeconds,
                  long createSize, int reattachTimeoutSeconds, String cookie, boolean showCookie, RbdOptions rbd,
                  boolean quiesce, String quiesceHook, int nbdsMax, int maxPart, String logFile, boolean foreground) {

    /** Kernel default I/O timeout, as Ceph's rbd-nbd leaves it. */
    static final int DEFAULT_IO_TIMEOUT = 30;
    /** How long a netlink device waits for a new daemon after its daemon died (Ceph's default). */
    static final int DEFAULT_REATTACH_TIMEOUT = 30;

    static MapOptions parse(String command, String[] args) throws UsageException {
        String spec = null;
        String device = null;
        boolean readOnly = false;
        boolean noTrim = false;
        int timeout = DEFAULT_IO_TIMEOUT;
        long size = -1;
        int reattach = DEFAULT_REATTACH_TIMEOUT;
        String cookie = null;
        boolean showCookie = false;
        RbdOptions rbd = new RbdOptions(command);
        boolean quiesce = false;
        String hook = null;
        int nbdsMax = 0;
        int maxPart = -1;
        String logFile = null;
        boolean foreground = false;
        boolean logToStderr = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            int taken = rbd.accept(args, i);
            if (taken >= 0) {
                i = taken;
                continue;
            }
            if (a.startsWith("--") && a.contains("=")) { // Ceph also takes --option=value
                String[] kv = a.split("=", 2);
                String[] spread = new String[args.length + 1];
                System.arraycopy(args, 0, spread, 0, i);
                spread[i] = kv[0];
                spread[i + 1] = kv[1];
                System.arraycopy(args, i + 1, spread, i + 2, args.length - i - 1);
                args = spread;
                a = kv[0];
                taken = rbd.accept(args, i);
                if (taken >= 0) {
                    i = taken;
                    continue;
                }
            }
            switch (a) {
                case "--device" -> device = value(command, args, ++i, a);
                case "--quiesce" -> quiesce = true;
                case "--quiesce-hook" -> hook = Path.of(value(command, args, ++i, a)).toAbsolutePath().toString();
                case "--nbds_max", "--nbds-max" -> nbdsMax = wholeNumber(command, value(command, args, ++i, a), a);
                case "--max_part", "--max-part" -> maxPart = wholeNumber(command, value(command, args, ++i, a), a);
                case "--log-file", "--log_file" -> logFile = Path.of(value(command, args, ++i, a)).toAbsolutePath().toString();
                case "-f" -> foreground = true;
                case "-d" -> { // Ceph's -d: foreground, logging to stderr
                    foreground = true;
                    logToStderr = true;
                }
                case "--read-only" -> readOnly = true;
                case "--notrim" -> noTrim = true;
                case "--io-timeout", "--timeout" -> timeout = wholeNumber(command, value(command, args, ++i, a), a);
                case "--reattach-timeout" -> reattach = wholeNumber(command, value(command, args, ++i, a), a);
                case "--cookie" -> cookie = value(command, args, ++i, a);
                case "--show-cookie" -> showCookie = true;
                case "--try-netlink" -> {
                    // netlink is the default already; accepted for Ceph's scripts
                }
                case "--size" -> {
                    try {
                        size = ImageSpec.parseSize(value(command, args, ++i, a));
                    } catch (IllegalArgumentException e) {
                        throw new UsageException(command + ": --size: " + e.getMessage());
                    }
                }
                default -> {
                    int setting = rbd.acceptCephSetting(args, i);
                    if (setting >= 0) {
                        i = setting;
                        continue;
                    }
                    if (a.startsWith("-")) {
                        throw new UsageException(command + ": unknown option '" + a + "'");
                    }
                    if (spec != null) {
                        throw new UsageException(command + ": one image only, got '" + spec + "' and '" + a + "'");
                    }
                    spec = a;
                }
            }
        }
        if (spec == null) {
            throw new UsageException(command + ": no image given");
        }
        if (device != null && !device.matches("/dev/nbd\\d+")) {
            throw new UsageException(command + ": --device wants /dev/nbdN, got '" + device + "'");
        }
        ImageSpec image;
        try {
            image = ImageSpec.parse(spec);
        } catch (IllegalArgumentException e) {
            throw new UsageException(command + ": " + e.getMessage());
        }
        image = rbd.apply(image);
        if (command.equals("attach") && device == null) {
            throw new UsageException("attach: --device /dev/nbdN is required");
        }
        if (logToStderr && logFile == null) {
            // the daemon writes the device's lines to this command's stderr, which it does not
            // inherit: through /proc, for as long as this command lives (as long as the device)
            logFile = "/proc/" + ProcessHandle.current().pid() + "/fd/2";
        }
        // --quiesce-hook without --quiesce is ignored, as by Ceph's rbd-nbd
        return new MapOptions(spec, image, device, readOnly, noTrim, timeout, size, reattach, cookie, showCookie, rbd,
                quiesce, hook, nbdsMax, maxPart, logFile, foreground);
    }

    private static String value(String command, String[] args, int i, String option) throws UsageException {
        if (i >= args.length) {
            throw new UsageException(command + ": " + option + " needs a value");
        }
        return args[i];
    }

    private static int wholeNumber(String command, String s, String option) throws UsageException {
        try {
            int v = Integer.parseInt(s);
            if (v < 0) {
                throw new NumberFormatException();
            }
            return v;
        } catch (NumberFormatException e) {
            throw new UsageException(command + ": " + option + " wants a whole number >= 0, got '" + s + "'");
        }
    }

    /** The device this asks for, as a daemon device entry (see rbdnbd.daemon.device-defaults). */
    Map<String, Object> deviceEntry(boolean attach) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("image", spec);
        if (device != null) {
            e.put("device", device);
        }
        e.put("read-only", readOnly);
        e.put("trim", !noTrim);
        e.put("io-timeout", ioTimeoutSeconds);
        e.put("reattach-timeout", reattachTimeoutSeconds);
        if (createSize >= 0) {
            e.put("size", createSize);
        }
        if (cookie != null) {
            e.put("cookie", cookie);
        }
        e.put("attach", attach);
        if (logFile != null) {
            e.put("log-file", logFile);
        }
        if (quiesce) {
            e.put("quiesce", true);
            if (quiesceHook != null) {
                e.put("quiesce-hook", quiesceHook);
            }
        }
        e.putAll(rbd.deviceEntry());
        return e;
    }
}
