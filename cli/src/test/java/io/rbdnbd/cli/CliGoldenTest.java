package io.rbdnbd.cli;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Golden tests of the command line: the help text, and what every option of {@code map} and
 * {@code attach} (Ceph's spellings, before or after the command) makes of the device. A change
 * shows as a diff of the files under {@code src/test/resources/golden}; after a deliberate one,
 * {@code mvn test -pl cli -Dtest=CliGoldenTest -Drbdnbd.golden.update=true} rewrites them.
 */
class CliGoldenTest {
    private static final Path GOLDEN = Path.of("src/test/resources/golden");
    private static final String SELF_STDERR = "/proc/" + ProcessHandle.current().pid() + "/fd/2";

    @Test
    void helpText() throws IOException {
        check("help.txt", Main.usage());
    }

    @Test
    void everyMapAndAttachOption() throws IOException {
        List<String> lines = Files.readAllLines(GOLDEN.resolve("map-options.txt"), StandardCharsets.UTF_8);
        StringBuilder actual = new StringBuilder();
        for (String line : lines) {
            if (line.startsWith("  ")) {
                continue; // an outcome: computed again below
            }
            actual.append(line).append('\n');
            if (line.startsWith("$ rbd-nbd ")) {
                actual.append(outcome(line.substring("$ rbd-nbd ".length()).split(" "))).append('\n');
            }
        }
        check("map-options.txt", actual.toString());
    }

    /** What the launcher makes of a map or attach command line, before it asks the daemon. */
    private static String outcome(String[] args) {
        try {
            Main.refuseUnsupported(args);
            String[] line = Main.commandFirst(args);
            String command = line[0];
            MapOptions m = MapOptions.parse(command, Arrays.copyOfRange(line, 1, line.length));
            Map<String, Object> entry = new TreeMap<>(m.deviceEntry(command.equals("attach")));
            return "  device: " + entry.entrySet().stream().map(e -> e.getKey() + "=" + e.getValue())
                    .collect(Collectors.joining(" ")).replace(SELF_STDERR, "/proc/MAP-PID/fd/2")
                    + "\n  command: show-cookie=" + m.showCookie() + " foreground=" + m.foreground()
                    + " nbds_max=" + m.nbdsMax() + " max_part=" + m.maxPart();
        } catch (UsageException e) {
            return "  error (exit " + Main.EXIT_USAGE + "): rbd-nbd: " + e.getMessage();
        }
    }

    private static void check(String name, String actual) throws IOException {
        Path file = GOLDEN.resolve(name);
        if (Boolean.getBoolean("rbdnbd.golden.update")) {
            Files.writeString(file, actual, StandardCharsets.UTF_8);
        }
        assertEquals(Files.readString(file, StandardCharsets.UTF_8), actual, name + " differs (see the class comment)");
    }
}
