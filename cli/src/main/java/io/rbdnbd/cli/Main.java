package io.rbdnbd.cli;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** Entry point of {@code bin/rbd-nbd}: picks the command and turns failures into one line and an exit code. */
public final class Main {
    /**
     * Exit code for a command line that cannot be run (unknown command, bad option): 1, as Ceph's
     * rbd-nbd (scripts test for it).
     */
    static final int EXIT_USAGE = 1;
    /** Exit code when the command ran and failed (image cannot be opened, socket in use, ...). */
    static final int EXIT_FAILURE = 1;

    private Main() {
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /** Commands, and which of them take Ceph's options (before or after the command word). */
    private static final java.util.Set<String> COMMANDS = java.util.Set.of("serve", "map", "attach", "unmap", "detach",
            "list-mapped", "stats", DaemonCommand.COMMAND);

    /** Options of Ceph's rbd-nbd that take no value (every other option takes one). */
    private static final java.util.Set<String> FLAGS = java.util.Set.of("--read-only", "--notrim", "--exclusive",
            "--show-cookie", "--try-netlink", "--quiesce", "--pretty-format", "--force", "--exit-when-idle",
            "--no-mon-config", "--no_mon_config", "-f", "-d");

    static int run(String[] args, PrintStream out, PrintStream err) {
        if (args.length == 0) {
            err.print(usage());
            return EXIT_USAGE;
        }
        // As Ceph's: --help or --version anywhere (`map --help` too) answers on stdout, exit 0
        for (String a : args) {
            if (a.equals("-h") || a.equals("--help") || a.equals(args[0]) && a.equals("help")) {
                out.print(usage());
                return 0;
            }
            if (a.equals("-v") || a.equals("--version")) {
                out.println(version());
                return 0;
            }
        }
        try {
            refuseUnsupported(args);
            args = commandFirst(args);
            String command = args[0];
            String[] rest = Arrays.copyOfRange(args, 1, args.length);
            if (!command.equals("map") && !command.equals("attach")) {
                // Ceph's -f/-d (do not daemonize): every other command runs in the foreground anyway
                rest = Arrays.stream(rest).filter(a -> !a.equals("-f") && !a.equals("-d")).toArray(String[]::new);
            }
            return switch (command) {
                case "serve" -> {
                    ServeCommand serve = ServeCommand.parse(rest);
                    yield serve.run(loadConfig(serve.configOverrides()), out);
                }
                case "map" -> DeviceCommands.map(MapOptions.parse(command, rest), false, loadConfig(), out, err);
                case "attach" -> DeviceCommands.map(MapOptions.parse(command, rest), true, loadConfig(), out, err);
                case "unmap", "detach" -> {
                    boolean force = command.equals("unmap") && Arrays.asList(rest).contains("--force");
                    long snapId = -1;
                    List<String> targets = new ArrayList<>();
                    for (int i = 0; i < rest.length; i++) {
                        String a = rest[i];
                        if (a.equals("--snap-id") || a.startsWith("--snap-id=")) { // rbd device unmap|detach --snap-id
                            String v = a.contains("=") ? a.substring(a.indexOf('=') + 1) : i + 1 < rest.length ? rest[++i] : "";
                            snapId = snapIdValue(command, v);
                        } else if (!(force && a.equals("--force"))) {
                            targets.add(a);
                        }
                    }
                    String target = oneTarget(command, targets.toArray(String[]::new));
                    yield command.equals("unmap") ? DeviceCommands.unmap(target, snapId, force, loadConfig())
                            : DeviceCommands.detach(target, snapId, loadConfig());
                }
                case "list-mapped" -> DeviceCommands.listMapped(rest, loadConfig(), out, err);
                case "stats" -> DeviceCommands.stats(rest, loadConfig(), out);
                case DaemonCommand.COMMAND -> DaemonCommand.run(rest, loadConfig());
                default -> throw new UsageException("unknown command '" + command + "'");
            };
        } catch (UsageException e) {
            err.println("rbd-nbd: " + e.getMessage());
            err.println("run 'rbd-nbd --help' for usage");
            return EXIT_USAGE;
        } catch (ConfigException e) {
            err.println("rbd-nbd: bad configuration: " + e.getMessage());
            return EXIT_FAILURE;
        } catch (IllegalArgumentException e) { // a setting's value out of its range
            err.println("rbd-nbd: bad configuration: " + e.getMessage());
            return EXIT_FAILURE;
        } catch (CommandFailedException e) {
            err.println("rbd-nbd: " + e.getMessage());
            return EXIT_FAILURE;
        }
    }

    /** Options of Ceph's rbd-nbd that rbdnbd cannot honour: refused, never silently ignored. */
    static void refuseUnsupported(String[] args) throws UsageException {
        for (String a : args) {
            if (a.matches("--set(user|group)(=.*)?")) {
                throw new UsageException(a.replaceFirst("=.*", "") + " is not supported: one daemon serves every device"
                        + " and keeps the privileges each later map needs (netlink and the nbd ioctls want"
                        + " CAP_NET_ADMIN and CAP_SYS_ADMIN); restrict it with the systemd unit instead");
            }
        }
    }

    /**
     * Ceph's rbd-nbd takes its options before the command too ({@code --device X map SPEC},
     * {@code --log-file=P map ...}): moves the command word to the front.
     */
    static String[] commandFirst(String[] args) throws UsageException {
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (COMMANDS.contains(a) || (!a.startsWith("-") && i == 0)) {
                if (i == 0) {
                    return args;
                }
                String[] out = new String[args.length];
                out[0] = a;
                System.arraycopy(args, 0, out, 1, i);
                System.arraycopy(args, i + 1, out, i + 1, args.length - i - 1);
                return out;
            }
            if (!a.startsWith("-")) {
                throw new UsageException("unknown command '" + a + "'");
            }
            if (!FLAGS.contains(a) && !a.contains("=")) {
                if (i + 1 < args.length && COMMANDS.contains(args[i + 1])
                        && Arrays.stream(args, i + 2, args.length).noneMatch(COMMANDS::contains)) {
                    // the only command word stands where this option's value would: it takes none we know of
                    throw new UsageException("unknown option '" + a + "'");
                }
                i++; // its value
            }
        }
        throw new UsageException("no command given");
    }

    /** What --version prints: this program's version and what it stands in for. */
    static String version() {
        java.util.Properties p = new java.util.Properties();
        try (java.io.InputStream in = Main.class.getResourceAsStream("/rbdnbd-version.properties")) {
            if (in != null) {
                p.load(in);
            }
        } catch (java.io.IOException e) {
            // no version to tell
        }
        return "rbdnbd version " + p.getProperty("version", "unknown") + " (rbd-nbd of Ceph 16.2.15, on Apache Pekko)";
    }

    private static long snapIdValue(String command, String v) throws UsageException {
        try {
            long id = Long.parseLong(v);
            if (id >= 0) {
                return id;
            }
        } catch (NumberFormatException e) {
            // said below
        }
        throw new UsageException(command + ": --snap-id wants a snapshot id (>= 0), got '" + v + "'");
    }

    private static String oneTarget(String command, String[] rest) throws UsageException {
        if (rest.length != 1 || rest[0].startsWith("-")) {
            throw new UsageException(command + ": give one device (/dev/nbdN) or image");
        }
        return rest[0];
    }

    /** The daemon's configuration file, read unless -Dconfig.file (or .resource, .url) names another. */
    static final java.nio.file.Path SYSTEM_CONFIG = java.nio.file.Path.of("/etc/rbd-nbd/rbd-nbd.conf");

    static Config loadConfig() {
        return loadConfig(ConfigFactory.empty());
    }

    /**
     * The command line's settings, then -D overrides, then -Dconfig.file (else
     * /etc/rbd-nbd/rbd-nbd.conf when it exists), then the daemon's defaults, then reference.conf.
     */
    static Config loadConfig(Config commandLine) {
        boolean named = System.getProperty("config.file") != null || System.getProperty("config.resource") != null
                || System.getProperty("config.url") != null;
        Config file = named ? ConfigFactory.defaultApplication()
                : java.nio.file.Files.exists(SYSTEM_CONFIG)
                ? ConfigFactory.parseFile(SYSTEM_CONFIG.toFile(), com.typesafe.config.ConfigParseOptions.defaults()
                        .setAllowMissing(false))
                : ConfigFactory.empty();
        return commandLine.withFallback(ConfigFactory.defaultOverrides())
                .withFallback(file)
                .withFallback(ConfigFactory.parseResources(Main.class.getClassLoader(), "rbdnbd-daemon.conf"))
                .withFallback(ConfigFactory.defaultReference())
                .resolve();
    }

    static String usage() {
        return """
                usage: rbd-nbd COMMAND ...

                  serve IMAGE (--socket PATH | --listen HOST:PORT)... [--read-only] [--size SIZE] [--name NAME]
                      Export IMAGE over the NBD protocol until SIGTERM or SIGINT, then drain and exit 0.
                      Prints one URI per listener (nbd+unix:///?socket=PATH, nbd://HOST:PORT/).
                      IMAGE is an RBD image [pool/[namespace/]]image[@snap] (pool rbd when left out),
                      file:PATH (--size SIZE creates it sparse when absent) or memory:SIZE.
                      --tls off|on|require --tls-certs DIR [--tls-verify-peer]: TLS (STARTTLS) with the
                      certificate and key in DIR (qemu's layout: server-cert.pem, server-key.pem,
                      ca-cert.pem); require refuses plaintext; verify-peer wants client certificates.

                  map IMAGE [--device /dev/nbdN] [--read-only] [--notrim] [--io-timeout S] [--size SIZE]
                      [--reattach-timeout S] [--show-cookie] [--cookie C] [--quiesce [--quiesce-hook PATH]]
                      [--nbds_max N] [--max_part N] [--log-file PATH]
                      Attach IMAGE to a kernel NBD device (the first free one unless --device) and print
                      the device once it is usable. The rbd-nbd daemon serves it; map starts the daemon
                      when none runs (it exits again with its last device; its log: rbdnbd.daemon.log-file).
                      --log-file PATH: the device's own lines (map, errors, reopens, unmap) go there too.
                      Netlink devices outlive a killed daemon for the re-attach timeout (default 30 s).
                      -f: stay in the foreground until the device is unmapped; SIGTERM or SIGINT to map
                      unmaps it.  -d: as -f, and the device's lines go to map's stderr.
                  attach --device /dev/nbdN [--cookie C] IMAGE
                      Serve a netlink device whose server died or was detached; the kernel replays the
                      I/O it held.
                  unmap [--force] /dev/nbdN|IMAGE [--snap-id ID]
                      Disconnect the device, let in-flight requests finish, close the image. --force fails
                      the device's in-flight I/O at once instead.
                  detach /dev/nbdN|IMAGE [--snap-id ID]
                      Stop serving a netlink device but leave it to the kernel for the re-attach timeout.
                  list-mapped [--format plain|json|xml] [--pretty-format]
                      Devices mapped by rbd-nbd: id (the pid of the process standing for the device;
                      SIGTERM to it unmaps the device), pool, namespace, image, snap, device, cookie.
                  stats [/dev/nbdN|IMAGE]
                      Per-device state, I/O counts, rates, latency percentiles, errors, restarts.
                  daemon [--exit-when-idle]
                      Run the daemon in the foreground (systemd), mapping rbdnbd.daemon.devices.

                Options may also stand before the command (--device /dev/nbd1 map IMAGE), and take
                --option=value. Configuration: /etc/rbd-nbd/rbd-nbd.conf (or -Dconfig.file=PATH via
                RBDNBD_JAVA_OPTS) over the defaults documented in reference.conf.

                RBD options (serve and map):
                  --id ID | -i ID | -n client.ID  cephx user (default admin; map also takes --name client.ID,
                                               serve's --name is the export name)
                  -c, --conf PATH              ceph.conf (default $CEPH_CONF, /etc/ceph/CLUSTER.conf)
                  -k, --keyring PATH           keyring (--keyfile PATH: a file holding just the key)
                  -m, --mon-host ADDRS         monitors;  --cluster NAME
                  --rbd-op-threads N           librbd op threads of the image's client
                  --some_ceph_option VALUE     any other Ceph setting (map, attach), underscore or dashed
                                               spelling (--rbd-cache false, --debug-rbd 20); --no-mon-config
                  --exclusive                  hold the image's exclusive lock: other clients cannot write
                  --snap-id ID                 serve a snapshot by id (read-only); or IMAGE@SNAP by name
                  --encryption-format luks1|luks2 --encryption-passphrase-file PATH
                                               open a LUKS-formatted image (rbd encryption format)

                Sizes take K, M, G, T suffixes (powers of 1024). -v, --version: the version; -h, --help
                (also after any command): this text.
                """;
    }
}
