package io.rbdnbd.cli;

import io.rbdnbd.actors.daemon.ControlProtocol;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** list-mapped output against golden files (src/test/resources/list-mapped/), and Ceph's empty outputs. */
class MappedListingTest {
    static final List<ControlProtocol.MappedDevice> ROWS = List.of(
            new ControlProtocol.MappedDevice(4242, "rbd", "", "vm1", "", "/dev/nbd0", "9f1c2a4e-1b7d-4c1e-9a43-2f1d8c3e5b6a", "mapped"),
            new ControlProtocol.MappedDevice(77, "ssd", "tenant-a", "db", "weekly", "/dev/nbd12", "c1", "mapped"),
            new ControlProtocol.MappedDevice(77, "", "", "file:/var/tmp/a&b<c>.img", "", "/dev/nbd3", "", "mapped"));

    static String golden(String name) throws IOException {
        try (InputStream in = MappedListingTest.class.getResourceAsStream("/list-mapped/" + name)) {
            assertNotNull(in, "golden file list-mapped/" + name);
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    @ParameterizedTest(name = "{0} pretty={1}")
    @CsvSource({"plain, false, plain.txt", "json, false, compact.json", "json, true, pretty.json",
            "xml, false, compact.xml", "xml, true, pretty.xml"})
    void formatsMatchTheGoldenFiles(String format, boolean pretty, String file) throws Exception {
        assertEquals(golden(file), MappedListing.format(ROWS, format, pretty));
    }

    /** What Ceph's rbd-nbd 16.2 prints with nothing mapped (measured with od -c). */
    @ParameterizedTest(name = "{0} pretty={1}")
    @CsvSource(delimiter = '|', value = {"plain|false|", "plain|true|", "json|false|[]", "json|true|[]\\n",
            "xml|false|<devices></devices>", "xml|true|<devices>\\n</devices>\\n\\n"})
    void nothingMappedPrintsWhatCephPrints(String format, boolean pretty, String expected) throws Exception {
        String e = expected == null ? "" : expected.replace("\\n", "\n");
        assertEquals(e, MappedListing.format(List.of(), format, pretty));
    }

    @Test
    void unknownFormatIsAUsageError() {
        UsageException e = assertThrows(UsageException.class, () -> MappedListing.format(ROWS, "yaml", false));
        assertEquals("list-mapped: --format must be plain, json or xml, not 'yaml'", e.getMessage());
    }

    @Test
    void jsonStringsAreEscaped() {
        assertEquals("\"a\\\"b\\\\c\\n\\u0001\"", MappedListing.jsonString("a\"b\\c\n\u0001"));
    }
}
