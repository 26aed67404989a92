package io.rbdnbd.engine.backend;

import java.nio.file.Path;
import java.util.Locale;

/**
 * An image named on the command line or in the configuration: an RBD image
 * {@code [pool/[namespace/]]image[@snap]} as Ceph's rbd-nbd takes it (pool "rbd" when left out),
 * {@code file:PATH} or {@code memory:SIZE}.
 */
public sealed interface ImageSpec {

    /** The pool an RBD spec without one names, as for Ceph's rbd tools. */
    String DEFAULT_POOL = "rbd";

    /**
     * An RBD image and how to open it.
     *
     * @param namespace  "" for the pool's default namespace
     * @param snap       snapshot name, or null
     * @param snapId     snapshot id (Ceph's {@code --snap-id}), or -1
     * @param exclusive  hold the exclusive lock for as long as the image is open
     * @param encryption LUKS format and passphrase file to load, or null
     */
    record Rbd(String pool, String namespace, String image, String snap, long snapId, boolean exclusive,
               Encryption encryption) implements ImageSpec {

        public record Encryption(String format, Path passphraseFile) {
            public Encryption {
                if (!format.equals("luks1") && !format.equals("luks2")) {
                    throw new IllegalArgumentException("encryption format '" + format + "' is not luks1 or luks2");
                }
            }
        }

        public boolean atSnapshot() {
            return snap != null || snapId >= 0;
        }

        public Rbd withSnapId(long id) {
            if (snap != null) {
                throw new IllegalArgumentException("image '" + this + "' names a snapshot already; --snap-id needs a plain image");
            }
            return new Rbd(pool, namespace, image, null, id, exclusive, encryption);
        }

        public Rbd withExclusive(boolean on) {
            return new Rbd(pool, namespace, image, snap, snapId, on, encryption);
        }

        public Rbd withEncryption(Encryption e) {
            return new Rbd(pool, namespace, image, snap, snapId, exclusive, e);
        }

        /** {@code pool/[namespace/]image[@snap]}, as Ceph prints it. */
        @Override
        public String toString() {
            return pool + "/" + (namespace.isEmpty() ? "" : namespace + "/") + image
                    + (snap != null ? "@" + snap : snapId >= 0 ? "@{id " + snapId + "}" : "");
        }
    }

    record FileImage(Path path) implements ImageSpec {
        @Override
        public String toString() {
            return "file:" + path;
        }
    }

    record MemoryImage(long size) implements ImageSpec {
        @Override
        public String toString() {
            return "memory:" + size;
        }
    }

    /**
     * The image with Ceph's open options applied (--exclusive, --snap-id, --encryption-format with
     * --encryption-passphrase-file); images that are not RBD take none of them.
     *
     * @param snapId            -1 for none
     * @param encryptionFormat  null for none; then {@code passphraseFile} is null too
     * @throws IllegalArgumentException with a message fit for the operator
     */
    static ImageSpec withOpenOptions(ImageSpec image, boolean exclusive, long snapId, String encryptionFormat,
                                     Path passphraseFile) {
        boolean any = exclusive || snapId >= 0 || encryptionFormat != null || passphraseFile != null;
        if (!(image instanceof Rbd rbd)) {
            if (any) {
                throw new IllegalArgumentException("RBD options apply to RBD images only, not " + image);
            }
            return image;
        }
        if ((encryptionFormat == null) != (passphraseFile == null)) {
            throw new IllegalArgumentException("--encryption-format and --encryption-passphrase-file go together");
        }
        Rbd r = rbd.withExclusive(exclusive);
        if (snapId >= 0) {
            r = r.withSnapId(snapId);
        }
        return encryptionFormat == null ? r : r.withEncryption(new Rbd.Encryption(encryptionFormat, passphraseFile));
    }

    /**
     * What unmap or detach names in "TARGET is not mapped": an image spec as Ceph prints it
     * ({@code img} is {@code rbd/img}), anything else (a device path) as given. ceph-csi matches
     * that line to tell "already unmapped" from a failure.
     *
     * @param snapId a snapshot of the image by id (unmap --snap-id), or -1
     */
    static String describeTarget(String target, long snapId) {
        try {
            ImageSpec s = parse(target);
            return (snapId >= 0 && s instanceof Rbd r ? r.withSnapId(snapId) : s).toString();
        } catch (IllegalArgumentException e) {
            return target;
        }
    }

    /** @throws IllegalArgumentException with a message fit for the operator */
    static ImageSpec parse(String spec) {
        if (spec == null || spec.isBlank()) {
            throw new IllegalArgumentException("no image given ([pool/[namespace/]]image[@snap], file:PATH or memory:SIZE)");
        }
        if (spec.startsWith("file:")) {
            String p = spec.substring(5);
            if (p.isEmpty()) {
                throw new IllegalArgumentException("image '" + spec + "': file: needs a path");
            }
            return new FileImage(Path.of(p).toAbsolutePath().normalize());
        }
        if (spec.startsWith("memory:")) {
            return new MemoryImage(parseSize(spec.substring(7)));
        }
        return parseRbd(spec);
    }

    private static Rbd parseRbd(String spec) {
        String usage = "image '" + spec + "' is not [pool/[namespace/]]image[@snap], file:PATH or memory:SIZE";
        String path = spec;
        String snap = null;
        int at = spec.indexOf('@');
        if (at >= 0) {
            path = spec.substring(0, at);
            snap = spec.substring(at + 1);
            if (snap.isEmpty() || snap.indexOf('@') >= 0 || snap.indexOf('/') >= 0) {
                throw new IllegalArgumentException(usage + ": bad snapshot name");
            }
        }
        String[] parts = path.split("/", -1);
        for (String p : parts) {
            if (p.isEmpty()) {
                throw new IllegalArgumentException(usage + ": empty pool, namespace or image name");
            }
            if (p.chars().anyMatch(c -> c < 0x20 || c == 0x7f)) {
                throw new IllegalArgumentException(usage + ": control characters in a name");
            }
        }
        return switch (parts.length) {
            case 1 -> new Rbd(DEFAULT_POOL, "", parts[0], snap, -1, false, null);
            case 2 -> new Rbd(parts[0], "", parts[1], snap, -1, false, null);
            case 3 -> new Rbd(parts[0], parts[1], parts[2], snap, -1, false, null);
            default -> throw new IllegalArgumentException(usage + ": too many '/'");
        };
    }

    /**
     * Sizes as operators write them: bytes, or a number with K, M, G, T, P (powers of 1024,
     * optionally followed by "iB" or "B").
     *
     * @throws IllegalArgumentException naming the bad text
     */
    static long parseSize(String text) {
        String t = text.trim().toUpperCase(Locale.ROOT);
        if (t.endsWith("IB")) {
            t = t.substring(0, t.length() - 2);
        } else if (t.endsWith("B")) {
            t = t.substring(0, t.length() - 1);
        }
        int shift = 0;
        if (!t.isEmpty()) {
            switch (t.charAt(t.length() - 1)) {
                case 'K' -> shift = 10;
                case 'M' -> shift = 20;
                case 'G' -> shift = 30;
                case 'T' -> shift = 40;
                case 'P' -> shift = 50;
                default -> shift = -1;
            }
            if (shift >= 0) {
                t = t.substring(0, t.length() - 1);
            } else {
                shift = 0;
            }
        }
        long n;
        try {
            n = Long.parseLong(t.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("size '" + text + "' is not a number of bytes or of K, M, G, T");
        }
        if (n < 0 || (shift > 0 && n > (Long.MAX_VALUE >> shift))) {
            throw new IllegalArgumentException("size '" + text + "' is out of range");
        }
        return n << shift;
    }
}
