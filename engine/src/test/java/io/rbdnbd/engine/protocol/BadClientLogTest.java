package io.rbdnbd.engine.protocol;

import org.junit.jupiter.api.Test;

import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

class BadClientLogTest {
    private static final long S = 1_000_000_000L;

    @Test
    void oneLinePerClientPerIntervalWithTheCountOfTheOthers() {
        BadClientLog log = new BadClientLog(Duration.ofSeconds(10));
        assertEquals("tcp:0.0.0.0:10809#1 from 10.0.0.5: closing the connection: bad magic",
                log.line("tcp:0.0.0.0:10809#1 from 10.0.0.5", "bad magic", 0));
        assertNull(log.line("tcp:0.0.0.0:10809#2 from 10.0.0.5", "bad magic", 1 * S));
        assertNull(log.line("tcp:0.0.0.0:10809#3 from 10.0.0.5", "bad magic", 2 * S));
        assertEquals("tcp:0.0.0.0:10809#4 from 10.0.0.6: closing the connection: x",
                log.line("tcp:0.0.0.0:10809#4 from 10.0.0.6", "x", 3 * S), "another client has its own window");
        assertEquals("tcp:0.0.0.0:10809#5 from 10.0.0.5: closing the connection: bad magic"
                        + " (2 more such lines from tcp:0.0.0.0:10809 from 10.0.0.5 not shown)",
                log.line("tcp:0.0.0.0:10809#5 from 10.0.0.5", "bad magic", 11 * S));
    }

    @Test
    void manyClientsShareOneWindowPastTheLimit() {
        BadClientLog log = new BadClientLog(Duration.ofSeconds(10));
        for (int i = 0; i < BadClientLog.MAX_CLIENTS; i++) {
            log.line("tcp:x#1 from 10.0." + (i >> 8) + "." + (i & 255), "x", 0);
        }
        assertEquals("tcp:x#1 from 10.99.0.1: closing the connection: x", log.line("tcp:x#1 from 10.99.0.1", "x", S));
        assertNull(log.line("tcp:x#1 from 10.99.0.2", "x", 2 * S));
    }

    @Test
    void zeroIntervalLogsEveryLine() {
        BadClientLog log = new BadClientLog(Duration.ZERO);
        for (int i = 0; i < 3; i++) {
            assertEquals("unix:/s#" + i + ": closing the connection: x", log.line("unix:/s#" + i, "x", 0));
        }
    }
}
