package io.rbdnbd.engine.backend;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** How diff_iterate2's allocated runs become the extents of a block-status reply. */
class RbdExtentsTest {
    private static final int M = 1 << 20;

    private static List<Extent> extents(long offset, long length, long[]... runs) {
        return RbdBackend.extents(offset, length, new ArrayList<>(List.of(runs)));
    }

    @Test
    void nothingAllocatedIsOneHole() {
        assertEquals(List.of(new Extent(8 * M, Extent.HOLE_ZERO)), extents(0, 8 * M));
    }

    @Test
    void wholeObjectRunsAreClippedToTheRequestAndGapsAreHoles() {
        // objects [0,4M) and [8M,12M) allocated; query [1M, 10M)
        assertEquals(List.of(new Extent(3 * M, Extent.DATA), new Extent(4 * M, Extent.HOLE_ZERO),
                        new Extent(2 * M, Extent.DATA)),
                extents(M, 9 * M, new long[]{8 * M, 4 * M}, new long[]{0, 4 * M}));
    }

    @Test
    void adjacentAndOverlappingRunsMerge() {
        assertEquals(List.of(new Extent(4096, Extent.HOLE_ZERO), new Extent(3 * 4096, Extent.DATA),
                        new Extent(4096, Extent.HOLE_ZERO)),
                extents(0, 5 * 4096, new long[]{4096, 4096}, new long[]{2 * 4096, 4096}, new long[]{2 * 4096, 2 * 4096}));
    }

    @Test
    void runsOutsideTheRangeAreIgnored() {
        assertEquals(List.of(new Extent(M, Extent.HOLE_ZERO)),
                extents(4 * M, M, new long[]{0, 4 * M}, new long[]{5 * M, M}));
    }
}
