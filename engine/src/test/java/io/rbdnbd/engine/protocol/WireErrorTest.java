package io.rbdnbd.engine.protocol;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import static org.junit.jupiter.api.Assertions.assertEquals;

class WireErrorTest {
    @ParameterizedTest(name = "errno {0} goes out as {1}")
    @CsvSource({
            "1, 1", "5, 5", "12, 12", "22, 22", "28, 28", "75, 75", "95, 95", // NBD's own values pass
            "30, 1",   // EROFS: writes refused
            "122, 28", // EDQUOT: out of space
            "108, 5",  // ESHUTDOWN from librbd means blocklisted, not a server shutdown
            "110, 5", "2, 5", "107, 5", "0x7fffffff, 5",
    })
    void onlyValuesNbdDefinesGoOnTheWire(String errno, int wire) {
        assertEquals(wire, Nbd.wireError(Integer.decode(errno)));
    }
}
