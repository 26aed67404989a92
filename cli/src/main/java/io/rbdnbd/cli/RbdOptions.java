package io.rbdnbd.cli;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import io.rbdnbd.engine.backend.ImageSpec;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The RBD and Ceph options {@code serve} and {@code map} share, spelt as Ceph's rbd-nbd spells
 * them: how to reach the cluster (which become {@code rbdnbd.ceph} settings) and how to open the
 * image (which go into its {@link ImageSpec.Rbd}).
 */
final class RbdOptions {
    /** A Ceph config option as Ceph's command lines take it: lower case words joined by underscores. */
    /** A Ceph setting's name, in its underscore or its dashed spelling (Ceph takes both). */
    private static final java.util.regex.Pattern CEPH_OPTION = java.util.regex.Pattern.compile("[a-z][a-z0-9]*([_-][a-z0-9]+)+");

    private final String command;
    private final Map<String, String> ceph = new LinkedHashMap<>();
    private boolean exclusive;
    private long snapId = -1;
    private String encryptionFormat;
    private Path passphraseFile;

    RbdOptions(String command) {
        this.command = command;
    }

    /**
     * Takes the option at {@code args[i]} (and its value) if it is one of these.
     *
     * @return the index of the last argument taken, or -1 when {@code args[i]} is not an RBD option
     */
    int accept(String[] args, int i) throws UsageException {
        String a = args[i];
        switch (a) {
            case "--id", "--user", "-i" -> ceph.put("id", value(args, i, a));
            case "--no-mon-config", "--no_mon_config" -> { // a flag in Ceph's tools, a setting of librados
                ceph.put("options.no_mon_config", "true");
                return i;
            }
            case "-n", "--name" -> {
                if (a.equals("--name") && command.equals("serve")) {
                    return -1; // serve's --name is the export name; -n or --id name the client there
                }
                String name = value(args, i, a);
                if (!name.startsWith("client.")) {
                    throw new UsageException(command + ": " + a + " wants client.ID, got '" + name + "'");
                }
                ceph.put("id", name.substring("client.".length()));
            }
            case "--cluster" -> ceph.put("cluster", value(args, i, a));
            case "-c", "--conf" -> ceph.put("conf", Path.of(value(args, i, a)).toAbsolutePath().toString());
            case "-k", "--keyring" -> ceph.put("keyring", Path.of(value(args, i, a)).toAbsolutePath().toString());
            case "--keyfile" -> ceph.put("options.keyfile", Path.of(value(args, i, a)).toAbsolutePath().toString());
            case "-m", "--mon-host", "--mon_host" -> ceph.put("mon-host", value(args, i, a));
            case "--rbd-op-threads", "--rbd_op_threads" -> {
                String n = value(args, i, a);
                if (!n.matches("[1-9][0-9]{0,3}")) {
                    throw new UsageException(command + ": " + a + " wants a thread count, got '" + n + "'");
                }
                ceph.put("options.rbd_op_threads", n);
            }
            case "--exclusive" -> {
                exclusive = true;
                return i;
            }
            case "--snap-id" -> {
                try {
                    snapId = Long.parseLong(value(args, i, a));
                    if (snapId < 0) {
                        throw new NumberFormatException();
                    }
                } catch (NumberFormatException e) {
                    throw new UsageException(command + ": --snap-id wants a snapshot id (>= 0), got '" + args[i + 1] + "'");
                }
            }
            case "--encryption-format" -> encryptionFormat = value(args, i, a);
            case "--encryption-passphrase-file" -> passphraseFile = Path.of(value(args, i, a)).toAbsolutePath();
            default -> {
                return -1;
            }
        }
        return i + 1;
    }

    /**
     * Takes {@code args[i]} as any other Ceph setting, in its underscore or dashed spelling
     * ({@code --rbd_cache false}, {@code --rbd-cache false}, {@code --debug-rbd 20}), as Ceph's tools
     * take them, when nothing else took it; librados refuses an unknown name when the image is opened.
     *
     * @return the index of the value taken, or -1 when {@code args[i]} does not look like one
     */
    int acceptCephSetting(String[] args, int i) throws UsageException {
        String a = args[i];
        if (!a.startsWith("--") || !CEPH_OPTION.matcher(a.substring(2)).matches()) {
            return -1;
        }
        if (i + 1 >= args.length || args[i + 1].startsWith("--")) { // a mistyped flag, not a setting
            throw new UsageException(command + ": unknown option '" + a + "' (a Ceph setting takes a value)");
        }
        ceph.put("options." + a.substring(2).replace('-', '_'), args[i + 1]);
        return i + 1;
    }

    private String value(String[] args, int i, String option) throws UsageException {
        if (i + 1 >= args.length) {
            throw new UsageException(command + ": " + option + " needs a value");
        }
        return args[i + 1];
    }

    /** The image with the open options applied; they are refused for images that are not RBD. */
    ImageSpec apply(ImageSpec image) throws UsageException {
        if (!ceph.isEmpty() && !(image instanceof ImageSpec.Rbd)) {
            throw new UsageException(command + ": Ceph and RBD options apply to RBD images only, not " + image);
        }
        try {
            return ImageSpec.withOpenOptions(image, exclusive, snapId, encryptionFormat, passphraseFile);
        } catch (IllegalArgumentException e) {
            throw new UsageException(command + ": " + e.getMessage());
        }
    }

    /** The cluster options as {@code rbdnbd.ceph} configuration, to lay over the loaded one. */
    Config configOverrides() {
        Map<String, String> paths = new LinkedHashMap<>();
        ceph.forEach((k, v) -> paths.put("rbdnbd.ceph." + k, v));
        return ConfigFactory.parseMap(paths, command + " command line");
    }

    /** These options as keys of a daemon device entry (see rbdnbd.daemon.device-defaults). */
    Map<String, Object> deviceEntry() {
        Map<String, Object> e = new LinkedHashMap<>();
        if (exclusive) {
            e.put("exclusive", true);
        }
        if (snapId >= 0) {
            e.put("snap-id", snapId);
        }
        if (encryptionFormat != null) {
            e.put("encryption-format", encryptionFormat);
        }
        if (passphraseFile != null) {
            e.put("encryption-passphrase-file", passphraseFile.toString());
        }
        ceph.forEach((k, v) -> e.put("ceph." + k, v));
        return e;
    }
}
