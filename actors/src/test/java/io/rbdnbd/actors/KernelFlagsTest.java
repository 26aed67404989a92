package io.rbdnbd.actors;

import io.rbdnbd.engine.protocol.Nbd;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The transmission flags a kernel device gets, as Ceph's rbd-nbd sets them (plus FUA and write-zeroes). */
class KernelFlagsTest {
    private static final int BASE = Nbd.FLAG_HAS_FLAGS | Nbd.FLAG_SEND_FLUSH | Nbd.FLAG_SEND_FUA;

    @ParameterizedTest(name = "readOnly={0} trim={1}")
    @CsvSource({"false, true, true, false", "false, false, false, false", "true, true, false, true",
            "true, false, false, true"})
    void flags(boolean readOnly, boolean trim, boolean offersTrim, boolean ro) {
        int f = KernelConnection.kernelFlags(readOnly, trim);
        assertEquals(BASE, f & BASE);
        assertEquals(offersTrim, (f & Nbd.FLAG_SEND_TRIM) != 0, "TRIM");
        assertEquals(offersTrim, (f & Nbd.FLAG_SEND_WRITE_ZEROES) != 0, "WRITE_ZEROES");
        assertEquals(ro, (f & Nbd.FLAG_READ_ONLY) != 0, "READ_ONLY");
    }
}
