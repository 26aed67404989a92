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
            case "--id", "--user" -> ceph.put("id", value(args, i, a));
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

    private String value(String[] args, int i, String option) throws UsageException {
        if (i + 1 >= args.length) {
            throw new UsageException(command + ": " + option + " needs a value");
        }
        return args[i + 1];
    }

    /** The image with the open options applied; they are refused for images that are not RBD. */
    ImageSpec apply(ImageSpec image) throws UsageException {
        boolean any = exclusive || snapId >= 0 || encryptionFormat != null || passphraseFile != null || !ceph.isEmpty();
        if (!(image instanceof ImageSpec.Rbd rbd)) {
            if (any) {
                throw new UsageException(command + ": Ceph and RBD options apply to RBD images only, not " + image);
            }
            return image;
        }
        if ((encryptionFormat == null) != (passphraseFile == null)) {
            throw new UsageException(command + ": --encryption-format and --encryption-passphrase-file go together");
        }
        try {
            ImageSpec.Rbd r = rbd.withExclusive(exclusive);
            if (snapId >= 0) {
                r = r.withSnapId(snapId);
            }
            if (encryptionFormat != null) {
                r = r.withEncryption(new ImageSpec.Rbd.Encryption(encryptionFormat, passphraseFile));
            }
            return r;
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

    /** The same options as arguments, for a child process. */
    List<String> toArgs() {
        List<String> a = new ArrayList<>();
        ceph.forEach((k, v) -> a.addAll(List.of(switch (k) {
            case "id" -> "--id";
            case "cluster" -> "--cluster";
            case "conf" -> "--conf";
            case "keyring" -> "--keyring";
            case "options.keyfile" -> "--keyfile";
            default -> "--mon-host";
        }, v)));
        if (exclusive) {
            a.add("--exclusive");
        }
        if (snapId >= 0) {
            a.addAll(List.of("--snap-id", Long.toString(snapId)));
        }
        if (encryptionFormat != null) {
            a.addAll(List.of("--encryption-format", encryptionFormat, "--encryption-passphrase-file",
                    passphraseFile.toString()));
        }
        return a;
    }
}
