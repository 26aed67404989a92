package io.rbdnbd.it.ceph;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What the RBD tests rely on {@link CephCluster} for: one cluster, images, rbd and ceph, the OSD's restart. */
class CephClusterIT {
    static CephCluster ceph;

    @TempDir
    Path tmp;

    @BeforeAll
    static void cluster() {
        ceph = CephCluster.shared();
    }

    @Test
    void oneClusterPerJvmWithItsConfInTheEnvironment() {
        assertSame(ceph, CephCluster.shared());
        assertTrue(Files.isRegularFile(ceph.conf()), ceph.conf()::toString);
        assertEquals(ceph.conf().toString(), ceph.env().get("CEPH_CONF"));
        String pools = ceph.ceph("osd", "pool", "ls");
        assertTrue(pools.lines().anyMatch("rbd"::equals), pools);
    }

    @Test
    void imageIsCreatedWrittenAndRemoved() {
        String spec = ceph.createImage("helper", "64M");
        String name = spec.substring("rbd/".length());
        try {
            assertTrue(spec.matches("rbd/it-helper-[0-9a-f]{6}"), spec);
            String info = ceph.rbd("info", "--format", "json", spec);
            assertEquals(64L << 20, jsonLong(info, "size"), info);
            assertTrue(ceph.rbd("ls", "rbd").lines().anyMatch(name::equals));

            ceph.rbd("bench", "--io-type", "write", "--io-total", "4M", spec);
            String du = ceph.rbd("du", "--format", "json", spec);
            assertTrue(jsonLong(du, "used_size") > 0, du);
        } finally {
            ceph.removeImage(spec);
        }
        assertFalse(ceph.rbd("ls", "rbd").lines().anyMatch(name::equals));
    }

    @Test
    void failingCommandFailsWithItsStderr() {
        AssertionError e = assertThrows(AssertionError.class, () -> ceph.rbd("info", "rbd/it-no-such-image"));
        assertTrue(e.getMessage().contains("No such file or directory"), e::getMessage);
        assertTrue(e.getMessage().contains("rbd info rbd/it-no-such-image"), e::getMessage);
    }

    @Test
    void osdStopsAndStartsAgainWithTheData() throws IOException {
        String spec = ceph.createImage("osd-restart", "16M");
        try {
            ceph.rbd("bench", "--io-type", "write", "--io-pattern", "rand", "--io-total", "4M", spec);
            String before = exportDigest(spec, "before.raw");

            ceph.stopOsd();
            try {
                assertTrue(osdLine().startsWith("osd.0 down"), this::osdLine);
            } finally {
                ceph.startOsd();
            }
            assertTrue(osdLine().startsWith("osd.0 up"), this::osdLine);

            assertEquals(before, exportDigest(spec, "after.raw"), "image content after the OSD restart");
        } finally {
            ceph.removeImage(spec);
        }
    }

    private String osdLine() {
        return ceph.ceph("osd", "dump").lines().filter(l -> l.startsWith("osd.0 ")).findFirst().orElse("(no osd.0)");
    }

    private String exportDigest(String spec, String file) throws IOException {
        Path out = tmp.resolve(file);
        ceph.rbd("export", "--no-progress", spec, out.toString());
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new AssertionError(e);
        }
        try (InputStream in = new DigestInputStream(Files.newInputStream(out), sha)) {
            in.transferTo(OutputStream.nullOutputStream());
        }
        return HexFormat.of().formatHex(sha.digest());
    }

    /** The first {@code "key":NUMBER} in rbd's JSON output. */
    private static long jsonLong(String json, String key) {
        Matcher m = Pattern.compile("\"" + Pattern.quote(key) + "\"\\s*:\\s*(\\d+)").matcher(json);
        assertTrue(m.find(), () -> "no \"" + key + "\" in " + json);
        return Long.parseLong(m.group(1));
    }
}
