package io.rbdnbd.actors.daemon;

import com.typesafe.config.ConfigFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The control protocol's one codec: every message survives the trip, and a bad line is refused by type. */
class ControlProtocolTest {

    @Test
    void everyRequestRoundTrips() throws ControlProtocol.MalformedMessage {
        List<ControlProtocol.Request> requests = List.of(
                new ControlProtocol.MapRequest(ConfigFactory.parseMap(Map.of("image", "rbd/ns/img@s", "cookie", "a b",
                        "ceph", Map.of("options", Map.of("rbd_cache", "false"))))),
                new ControlProtocol.UnmapRequest("/dev/nbd3", -1, true),
                new ControlProtocol.UnmapRequest("rbd/img", 4, false),
                new ControlProtocol.DetachRequest("rbd/img", 7),
                new ControlProtocol.ListRequest(),
                new ControlProtocol.StatsRequest(""));
        for (ControlProtocol.Request r : requests) {
            String line = ControlProtocol.encode(r);
            assertTrue(!line.contains("\n"), "one line: " + line);
            assertEquals(r, ControlProtocol.decodeRequest(line), line);
        }
    }

    @Test
    void everyAnswerRoundTrips() throws ControlProtocol.MalformedMessage {
        List<ControlProtocol.Answer> answers = List.of(
                new ControlProtocol.Mapped("/dev/nbd0", "c\"ookie", 4242),
                new ControlProtocol.Done(),
                new ControlProtocol.Listed(List.of()),
                new ControlProtocol.Listed(List.of(
                        new ControlProtocol.MappedDevice(1, "rbd", "", "img", "", "/dev/nbd0", "", "mapped"),
                        new ControlProtocol.MappedDevice(2, "p", "ns", "i", "@4", "/dev/nbd1", "k", "reopening"))),
                new ControlProtocol.StatsText("Device: /dev/nbd0\nState: mapped\n"),
                new ControlProtocol.Failed("rbd-nbd: rbd/img is not mapped"));
        for (ControlProtocol.Answer a : answers) {
            String line = ControlProtocol.encode(a);
            assertTrue(!line.contains("\n"), "one line: " + line);
            assertEquals(a, ControlProtocol.decodeAnswer(line), line);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "not json", "{}", "{\"op\":\"frob\"}", "{\"op\":\"unmap\"}", "{\"op\":\"map\",\"device\":3}",
            "{\"op\":\"detach\",\"target\":\"x\",\"snap-id\":\"y\"}", "[1,2]"})
    void malformedRequestsAreRefused(String line) {
        assertThrows(ControlProtocol.MalformedMessage.class, () -> ControlProtocol.decodeRequest(line));
    }

    @ParameterizedTest
    @ValueSource(strings = {"", "{\"ok\":true}", "{\"answer\":\"mapped\"}", "{\"answer\":\"listed\",\"devices\":[{}]}",
            "{\"answer\":\"sure\"}"})
    void malformedAnswersAreRefused(String line) {
        assertThrows(ControlProtocol.MalformedMessage.class, () -> ControlProtocol.decodeAnswer(line));
    }
}
