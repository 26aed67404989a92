package io.rbdnbd.engine.backend;

/**
 * A run of bytes with one allocation state, as block status reports it. The flag values are
 * those of NBD's base:allocation context, so they go on the wire unchanged.
 */
public record Extent(long length, int flags) {
    public static final int DATA = 0;
    public static final int HOLE = 1;
    public static final int ZERO = 2;
    /** Unallocated and reading as zeroes: the usual state of never-written or trimmed ranges. */
    public static final int HOLE_ZERO = HOLE | ZERO;

    public Extent {
        if (length <= 0) {
            throw new IllegalArgumentException("extent length must be positive: " + length);
        }
    }
}
