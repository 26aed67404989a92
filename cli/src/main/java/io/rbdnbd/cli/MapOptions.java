package io.rbdnbd.cli;

import io.rbdnbd.engine.backend.ImageSpec;

import java.util.ArrayList;
import java.util.List;

/** Options of {@code map} (and of the device daemon it starts, which takes the same). */
record MapOptions(String spec, ImageSpec image, String device, boolean readOnly, boolean noTrim, int ioTimeoutSeconds,
                  long createSize, int reattachTimeoutSeconds, String cookie, boolean showCookie, RbdOptions rbd) {

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
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            int taken = rbd.accept(args, i);
            if (taken >= 0) {
                i = taken;
                continue;
            }
            switch (a) {
                case "--device" -> device = value(command, args, ++i, a);
                case "--read-only" -> readOnly = true;
                case "--notrim" -> noTrim = true;
                case "--io-timeout", "--timeout" -> timeout = seconds(command, value(command, args, ++i, a), a);
                case "--reattach-timeout" -> reattach = seconds(command, value(command, args, ++i, a), a);
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
        return new MapOptions(spec, image, device, readOnly, noTrim, timeout, size, reattach, cookie, showCookie, rbd);
    }

    private static String value(String command, String[] args, int i, String option) throws UsageException {
        if (i >= args.length) {
            throw new UsageException(command + ": " + option + " needs a value");
        }
        return args[i];
    }

    private static int seconds(String command, String s, String option) throws UsageException {
        try {
            int v = Integer.parseInt(s);
            if (v < 0) {
                throw new NumberFormatException();
            }
            return v;
        } catch (NumberFormatException e) {
            throw new UsageException(command + ": " + option + " wants whole seconds >= 0, got '" + s + "'");
        }
    }

    /** The same options as arguments, for the device daemon's command line. */
    List<String> toArgs() {
        List<String> a = new ArrayList<>(List.of(spec));
        if (device != null) {
            a.addAll(List.of("--device", device));
        }
        if (readOnly) {
            a.add("--read-only");
        }
        if (noTrim) {
            a.add("--notrim");
        }
        a.addAll(List.of("--io-timeout", Integer.toString(ioTimeoutSeconds)));
        if (createSize >= 0) {
            a.addAll(List.of("--size", Long.toString(createSize)));
        }
        a.addAll(List.of("--reattach-timeout", Integer.toString(reattachTimeoutSeconds)));
        if (cookie != null) {
            a.addAll(List.of("--cookie", cookie));
        }
        if (showCookie) {
            a.add("--show-cookie");
        }
        a.addAll(rbd.toArgs());
        return a;
    }
}
