package io.rbdnbd.cli;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;

import java.io.PrintStream;
import java.util.Arrays;

/** Entry point of {@code bin/rbd-nbd}: picks the command and turns failures into one line and an exit code. */
public final class Main {
    /** Exit code for a command line that cannot be run (unknown command, bad option). */
    static final int EXIT_USAGE = 2;
    /** Exit code when the command ran and failed (image cannot be opened, socket in use, ...). */
    static final int EXIT_FAILURE = 1;

    private Main() {
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    static int run(String[] args, PrintStream out, PrintStream err) {
        if (args.length == 0 || args[0].equals("-h") || args[0].equals("--help") || args[0].equals("help")) {
            (args.length == 0 ? err : out).print(usage());
            return args.length == 0 ? EXIT_USAGE : 0;
        }
        String command = args[0];
        String[] rest = Arrays.copyOfRange(args, 1, args.length);
        try {
            return switch (command) {
                case "serve" -> {
                    ServeCommand serve = ServeCommand.parse(rest);
                    yield serve.run(loadConfig(serve.configOverrides()), out);
                }
                case "map" -> DeviceCommands.map(MapOptions.parse(command, rest), false, out);
                case "attach" -> DeviceCommands.map(MapOptions.parse(command, rest), true, out);
                case DeviceCommands.DAEMON_COMMAND, DeviceCommands.REATTACH_DAEMON_COMMAND -> {
                    MapOptions options = MapOptions.parse(command, rest);
                    yield DeviceCommands.daemon(options, command.equals(DeviceCommands.REATTACH_DAEMON_COMMAND),
                            loadConfig(options.rbd().configOverrides()), out);
                }
                case "unmap" -> {
                    if (rest.length != 1) {
                        throw new UsageException("unmap: give one device (/dev/nbdN) or image");
                    }
                    yield DeviceCommands.unmap(rest[0], out);
                }
                case "list-mapped" -> DeviceCommands.listMapped(rest, out);
                default -> throw new UsageException("unknown command '" + command + "'");
            };
        } catch (UsageException e) {
            err.println("rbd-nbd: " + e.getMessage());
            err.println("run 'rbd-nbd --help' for usage");
            return EXIT_USAGE;
        } catch (ConfigException e) {
            err.println("rbd-nbd: bad configuration: " + e.getMessage());
            return EXIT_FAILURE;
        } catch (CommandFailedException e) {
            err.println("rbd-nbd: " + e.getMessage());
            return EXIT_FAILURE;
        }
    }

    /**
     * The command line's settings, then -D overrides, then application.conf or -Dconfig.file, then
     * the daemon's defaults, then reference.conf.
     */
    static Config loadConfig(Config commandLine) {
        return commandLine.withFallback(ConfigFactory.defaultOverrides())
                .withFallback(ConfigFactory.defaultApplication())
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

                  map IMAGE [--device /dev/nbdN] [--read-only] [--notrim] [--io-timeout S] [--size SIZE]
                      Attach IMAGE to a kernel NBD device (the first free one unless --device) and print
                      the device once it is usable; a background process serves it until unmap.
                      [--reattach-timeout S] [--show-cookie] [--cookie C]
                      Netlink devices outlive a killed daemon for the re-attach timeout (default 30 s).
                  attach --device /dev/nbdN [--cookie C] IMAGE
                      Serve a netlink device whose daemon died; the kernel replays the I/O it held.
                  unmap /dev/nbdN|IMAGE
                      Disconnect the device, let in-flight requests finish, and wait for its process to exit.
                  list-mapped [--format plain|json|xml] [--pretty-format]
                      Devices mapped by rbd-nbd: id (pid), pool, namespace, image, snap, device, cookie.

                RBD options (serve and map):
                  --id ID | -n client.ID       cephx user (default admin; map also takes --name client.ID,
                                               serve's --name is the export name)
                  -c, --conf PATH              ceph.conf (default $CEPH_CONF, /etc/ceph/CLUSTER.conf)
                  -k, --keyring PATH           keyring (--keyfile PATH: a file holding just the key)
                  -m, --mon-host ADDRS         monitors;  --cluster NAME
                  --exclusive                  hold the image's exclusive lock: other clients cannot write
                  --snap-id ID                 serve a snapshot by id (read-only); or IMAGE@SNAP by name
                  --encryption-format luks1|luks2 --encryption-passphrase-file PATH
                                               open a LUKS-formatted image (rbd encryption format)

                Sizes take K, M, G, T suffixes (powers of 1024).
                """;
    }
}
