package io.rbdnbd.cli;

import io.rbdnbd.engine.backend.ImageSpec;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class MainTest {
    private record Outcome(int code, String out, String err) {
    }

    private static Outcome run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Outcome(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void noArgumentsPrintsUsageAndFails() {
        Outcome o = run();
        assertEquals(Main.EXIT_USAGE, o.code());
        assertTrue(o.err().contains("usage: rbd-nbd"), o.err());
    }

    @Test
    void helpSucceeds() {
        Outcome o = run("--help");
        assertEquals(0, o.code());
        assertTrue(o.out().contains("serve IMAGE"), o.out());
    }

    /** As Ceph's rbd-nbd: every command's --help is the usage on stdout, exit 0; ceph-csi probes it for --cookie. */
    @ParameterizedTest
    @CsvSource({"--help", "-h", "help", "map --help", "unmap -h", "list-mapped --help", "serve memory:1M --help",
            "attach --device /dev/nbd0 --help"})
    void everyHelpIsTheUsageOnStdout(String line) {
        Outcome o = run(line.split(" "));
        assertEquals(0, o.code(), o.err());
        assertEquals("", o.err());
        assertTrue(o.out().contains("serve IMAGE") && o.out().contains("--cookie"), o.out());
    }

    @ParameterizedTest
    @CsvSource({"--version", "-v", "map rbd/img --version"})
    void versionSucceedsOnStdout(String line) {
        Outcome o = run(line.split(" "));
        assertEquals(0, o.code(), o.err());
        assertTrue(o.out().matches("rbdnbd version \\S+ \\(rbd-nbd of Ceph 16\\.2\\.15, on Apache Pekko\\)\\n"), o.out());
        assertFalse(o.out().contains("unknown"), "the version comes from the build: " + o.out());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "--foo list-mapped | unknown option '--foo'",
            "unmap rbd/img --snap-id x | --snap-id wants a snapshot id",
            "detach rbd/img --snap-id=-2 | --snap-id wants a snapshot id",
            "unmap rbd/img --snap-id | --snap-id wants a snapshot id",
            "unmap rbd/img other | give one device",
            "--foo=1 --bar map | unknown option '--bar'",
            "frobnicate | unknown command 'frobnicate'",
            "serve | no image given",
            "serve memory:1G | give --socket PATH or --listen HOST:PORT",
            "serve memory:1G --socket | --socket needs a value",
            "serve memory:1G --socket /tmp/x --bogus | unknown option '--bogus'",
            "serve a/b/c/d --socket /tmp/x | too many '/'",
            "serve pool/img@ --socket /tmp/x | bad snapshot name",
            "serve memory:1G --exclusive --socket /tmp/x | apply to RBD images only",
            "serve file:/x --id admin --socket /tmp/x | apply to RBD images only",
            "serve p/i --snap-id x --socket /tmp/x | --snap-id wants a snapshot id",
            "serve p/i@s --snap-id 4 --socket /tmp/x | names a snapshot already",
            "serve p/i --encryption-format luks2 --socket /tmp/x | go together",
            "serve p/i --encryption-format aes --encryption-passphrase-file /p --socket /tmp/x | not luks1 or luks2",
            "serve p/i -n admin --socket /tmp/x | wants client.ID",
            "map p/i --name admin | wants client.ID",
            "map p/i --keyring | --keyring needs a value",
            "map p/i --rbd-op-threads many | wants a thread count",
            "map p/i --nbds_max -1 | wants a whole number",
            "--device | no command given",
            "--device /dev/nbd0 frob img | unknown command 'frob'",
            "unmap | give one device",
            "unmap /dev/nbd0 /dev/nbd1 | give one device",
            "detach | give one device",
            "stats a b | at most one device",
            "list-mapped --format yaml | must be plain, json or xml",
            "daemon --frob | unknown option '--frob'",
            "serve memory:lots --socket /tmp/x | size 'lots' is not a number",
            "serve memory:1G --size 1G --socket /tmp/x | --size applies to file: images only",
            "serve memory:1G memory:2G --socket /tmp/x | one image only",
            "serve memory:1G --listen 127.0.0.1:99999 | port must be 0..65535",
    })
    void usageErrorsSayWhatIsWrongInOneLine(String args, String message) {
        Outcome o = run(args.trim().split("\\s+"));
        assertEquals(Main.EXIT_USAGE, o.code(), o.err());
        String first = o.err().lines().findFirst().orElse("");
        assertTrue(first.startsWith("rbd-nbd: ") && first.contains(message), first);
    }

    @Test
    void missingFileImageFailsNamingTheFile(@TempDir Path dir) {
        Outcome o = run("serve", "file:" + dir.resolve("nope.img"), "--socket", dir.resolve("s").toString());
        assertEquals(Main.EXIT_FAILURE, o.code());
        assertTrue(o.err().contains("nope.img") && o.err().contains("ENOENT"), o.err());
    }

    @Test
    void rbdOptionsReachTheSpecTheConfigAndTheDeviceDaemon() throws UsageException {
        MapOptions m = MapOptions.parse("map", new String[]{"pool/ns/img", "--exclusive", "--notrim", "--keyfile",
                "/etc/ceph/nbd.key", "--id", "nbd", "-m",
                "127.0.0.1:3300", "--encryption-format", "luks1", "--encryption-passphrase-file", "/etc/pass"});
        io.rbdnbd.engine.backend.ImageSpec.Rbd r = (io.rbdnbd.engine.backend.ImageSpec.Rbd) m.image();
        assertTrue(r.exclusive());
        assertEquals("luks1", r.encryption().format());
        com.typesafe.config.Config c = Main.loadConfig(m.rbd().configOverrides());
        assertEquals("nbd", c.getString("rbdnbd.ceph.id"));
        assertEquals("127.0.0.1:3300", c.getString("rbdnbd.ceph.mon-host"));
        assertEquals("ceph", c.getString("rbdnbd.ceph.cluster"));
        assertEquals("/etc/ceph/nbd.key", c.getString("rbdnbd.ceph.options.keyfile"));
        assertEquals("false", c.getString("rbdnbd.ceph.options.rbd_cache"), "the reference options stay");
        assertTrue(m.noTrim());
        // what the daemon gets: the same image, open options and Ceph settings
        // as DeviceCommands.map sends it over the control socket and the daemon reads it
        String wire = com.typesafe.config.ConfigValueFactory.fromMap(java.util.Map.of("device",
                io.rbdnbd.actors.daemon.DeviceRequest.entry(m.deviceEntry(false), "test").root().unwrapped()))
                .render(com.typesafe.config.ConfigRenderOptions.concise());
        io.rbdnbd.actors.daemon.DeviceRequest d = io.rbdnbd.actors.daemon.DeviceRequest.from(
                io.rbdnbd.actors.daemon.DeviceRequest.parse(wire, "wire").getConfig("device"),
                c.getConfig(io.rbdnbd.actors.daemon.DeviceRequest.DEFAULTS));
        assertEquals(m.image(), d.image());
        assertEquals("pool/ns/img", d.spec());
        assertTrue(!d.trim() && !d.readOnly() && !d.attach());
        com.typesafe.config.Config device = d.deviceConfig(c);
        assertEquals("nbd", device.getString("rbdnbd.ceph.id"));
        assertEquals("/etc/ceph/nbd.key", device.getString("rbdnbd.ceph.options.keyfile"));
        assertEquals("false", device.getString("rbdnbd.ceph.options.rbd_cache"), "the daemon's options stay");
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "map img | map img",
            "--device /dev/nbd1 map img | map --device /dev/nbd1 img",
            "--log-file=/tmp/l map img --read-only | map --log-file=/tmp/l img --read-only",
            "--rbd-op-threads 4 --read-only map img | map --rbd-op-threads 4 --read-only img",
            "--id map map img | map --id map img",
            "list-mapped --format json | list-mapped --format json",
    })
    void cephOptionsMayStandBeforeTheCommand(String args, String expected) throws UsageException {
        assertEquals(expected, String.join(" ", Main.commandFirst(args.trim().split("\\s+"))));
    }

    /** Ceph's tools take a setting's dashed spelling too, and a few flags of their own. */
    @Test
    void cephSettingsInTheirDashedSpellingAndCephsFlags() throws UsageException {
        MapOptions m = MapOptions.parse("map", new String[]{"img", "--rbd-cache=false", "--debug-rbd", "20",
                "--log-to-stderr=true", "--admin-socket", "/run/x.asok", "-i", "nbd", "--no-mon-config"});
        java.util.Map<String, Object> e = m.deviceEntry(false);
        assertEquals("false", e.get("ceph.options.rbd_cache"));
        assertEquals("20", e.get("ceph.options.debug_rbd"));
        assertEquals("true", e.get("ceph.options.log_to_stderr"));
        assertEquals("/run/x.asok", e.get("ceph.options.admin_socket"));
        assertEquals("true", e.get("ceph.options.no_mon_config"));
        assertEquals("nbd", e.get("ceph.id"));
        assertEquals("map --no-mon-config img", String.join(" ", Main.commandFirst(new String[]{"--no-mon-config", "map", "img"})));
    }

    @Test
    void otherCephSettingsPassToTheImagesClient() throws UsageException {
        MapOptions m = MapOptions.parse("map", new String[]{"img", "--rbd_cache", "true", "--rados_osd_op_timeout=30"});
        assertEquals("true", m.deviceEntry(false).get("ceph.options.rbd_cache"));
        assertEquals("30", m.deviceEntry(false).get("ceph.options.rados_osd_op_timeout"));
        assertThrows(UsageException.class, () -> MapOptions.parse("map", new String[]{"img", "--read-olny"}));
        assertThrows(UsageException.class, () -> MapOptions.parse("map", new String[]{"file:/x", "--rbd_cache", "true"}));
    }

    @Test
    void optionsTakeCephsEqualsForm() throws UsageException {
        MapOptions m = MapOptions.parse("map", new String[]{"img", "--device=/dev/nbd3", "--id=nbd", "--io-timeout=0",
                "--quiesce", "--quiesce-hook=/bin/hook", "--nbds_max=16", "--max_part=4"});
        assertEquals("/dev/nbd3", m.device());
        assertEquals(0, m.ioTimeoutSeconds());
        assertEquals("nbd", m.deviceEntry(false).get("ceph.id"));
        assertEquals("/bin/hook", m.quiesceHook());
        assertEquals(16, m.nbdsMax());
        assertEquals(4, m.maxPart());
    }

    @Test
    void listenAddresses() throws UsageException {
        assertEquals(new ServeCommand.Listen("127.0.0.1", 10809), ServeCommand.parseListen("10809"));
        assertEquals(new ServeCommand.Listen("127.0.0.1", 0), ServeCommand.parseListen(":0"));
        assertEquals(new ServeCommand.Listen("::1", 5), ServeCommand.parseListen("[::1]:5"));
        assertEquals(new ServeCommand.Listen("localhost", 7), ServeCommand.parseListen("localhost:7"));
        assertThrows(UsageException.class, () -> ServeCommand.parseListen("host:"));
        assertThrows(UsageException.class, () -> ServeCommand.parseListen("host:x"));
    }

    @Test
    void sizes() {
        assertEquals(1L << 30, ImageSpec.parseSize("1G"));
        assertEquals(1L << 30, ImageSpec.parseSize("1GiB"));
        assertEquals(512L << 20, ImageSpec.parseSize("512m"));
        assertEquals(4096, ImageSpec.parseSize("4096"));
        assertEquals(2L << 40, ImageSpec.parseSize("2T"));
        assertThrows(IllegalArgumentException.class, () -> ImageSpec.parseSize("-1"));
        assertThrows(IllegalArgumentException.class, () -> ImageSpec.parseSize("99999999999P"));
    }
}
