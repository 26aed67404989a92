package io.rbdnbd.engine.backend;

import java.nio.file.Path;
import java.util.Locale;

/**
 * An image named on the command line or in the configuration: {@code file:PATH},
 * {@code memory:SIZE}. (RBD specs, {@code pool/[namespace/]image[@snap]}, come with the rbd
 * backend.)
 */
public sealed interface ImageSpec {

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

    /** @throws IllegalArgumentException with a message fit for the operator */
    static ImageSpec parse(String spec) {
        if (spec == null || spec.isBlank()) {
            throw new IllegalArgumentException("no image given (file:PATH or memory:SIZE)");
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
        throw new IllegalArgumentException("image '" + spec + "' is not file:PATH or memory:SIZE"
                + " (RBD images pool/[namespace/]image[@snap] need the rbd backend, not built yet)");
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
