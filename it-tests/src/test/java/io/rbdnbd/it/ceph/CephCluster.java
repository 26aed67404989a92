package io.rbdnbd.it.ceph;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

import io.rbdnbd.it.Commands;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

/**
 * The Ceph cluster the RBD integration tests run against: one per test JVM, shared by every test.
 *
 * <p>By default {@link #shared()} starts a throw-away one-node cluster (1 mon, 1 mgr, 1 memstore
 * OSD, cephx, 127.0.0.1 only) with {@code scripts/ceph-cluster.sh start it-tests/target/ceph}
 * (about 6 s; pool {@code rbd} exists, size 1) and stops it, deleting its directory, when the JVM
 * exits. A cluster left behind by a JVM that was killed is stopped and purged first. When the
 * environment variable {@code CEPH_CONF} is set, the cluster it names is used instead (an
 * operator's cluster with a pool {@code rbd}): nothing is started, and it is never stopped.
 *
 * <p>Missing Ceph packages make the tests fail, never skip: CI installs them with
 * {@code scripts/install-deps.sh test}.
 *
 * <pre>{@code
 * static CephCluster ceph;
 * @BeforeAll static void cluster() { ceph = CephCluster.shared(); }
 *
 * @Test void serves() {
 *     String image = ceph.createImage("serves", "64M");          // "rbd/it-serves-3fa9c2"
 *     try {
 *         // start a child process with ceph.env() (CEPH_CONF) serving `image` ...
 *         ceph.rbd("bench", "--io-type", "write", "--io-total", "4M", image);
 *     } finally {
 *         ceph.removeImage(image);
 *     }
 * }
 *
 * @Test void survivesAnOsdRestart() {
 *     ceph.stopOsd();                  // skips the test on an operator's cluster
 *     try { ... I/O now waits ... } finally { ceph.startOsd(); }   // always restart it
 * }
 * }</pre>
 */
public final class CephCluster {
    public static final String INSTALL_HINT = "run scripts/install-deps.sh test (it installs the Debian packages "
            + "ceph-mon ceph-osd ceph-mgr ceph-common librbd1 librados2)";
    /** The pool every image of the tests lives in. */
    public static final String POOL = "rbd";
    /** Per {@link #rbd}/{@link #ceph} call; an unreachable cluster makes the ceph tool retry forever. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(120);
    /** The script waits up to 120 s for the mon, then as long for osd.0 and the mgr. */
    private static final Duration START_TIMEOUT = Duration.ofMinutes(6);
    /** SIGTERM, memstore saving what the tests wrote, the mon marking the OSD down. */
    private static final Duration OSD_TIMEOUT = Duration.ofMinutes(3);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(90);
    /** Daemons, tools and the Debian packages they come from (all needed to start a cluster). */
    private static final String[][] CLUSTER_TOOLS = {
        {"ceph-mon", "ceph-mon"}, {"ceph-osd", "ceph-osd"}, {"ceph-mgr", "ceph-mgr"}, {"ceph", "ceph-common"},
        {"rbd", "ceph-common"}, {"ceph-authtool", "ceph-common"}, {"monmaptool", "ceph-base"},
    };

    private static CephCluster shared;
    private static AssertionError startFailure;

    private final Path conf;
    /** The cluster's directory and script when this JVM started it; null for an operator's cluster. */
    private final Path dir;
    private final Path script;

    private CephCluster(Path conf, Path dir, Path script) {
        this.conf = conf;
        this.dir = dir;
        this.script = script;
    }

    /**
     * The cluster of this JVM, started on first use (or the operator's, see the class comment).
     * Fails the calling test when Ceph is missing or the cluster does not start; after a failed
     * start every later call fails at once with the same message.
     */
    public static synchronized CephCluster shared() {
        if (startFailure != null) {
            throw new AssertionError("the Ceph cluster failed to start earlier in this JVM:\n"
                    + startFailure.getMessage(), startFailure);
        }
        if (shared == null) {
            try {
                shared = create();
            } catch (AssertionError e) {
                startFailure = e;
                throw e;
            }
        }
        return shared;
    }

    private static CephCluster create() {
        String operatorConf = System.getenv("CEPH_CONF");
        if (operatorConf != null && !operatorConf.isBlank()) {
            Path conf = Path.of(operatorConf).toAbsolutePath();
            requireTools(new String[][] {{"ceph", "ceph-common"}, {"rbd", "ceph-common"}});
            if (!Files.isReadable(conf)) {
                Assertions.fail("CEPH_CONF=" + operatorConf + " is set but is not a readable file: unset it to let "
                        + "the tests start their own cluster, or point it at the ceph.conf of a running one");
            }
            CephCluster cluster = new CephCluster(conf, null, null);
            Commands.Result r = cluster.run(Duration.ofSeconds(60), "ceph", "--connect-timeout", "30", "health");
            if (!r.succeeded()) {
                Assertions.fail("the cluster of CEPH_CONF=" + conf + " does not answer (unset CEPH_CONF to let the "
                        + "tests start their own):\n" + r.describe());
            }
            System.out.println("[ceph] using the cluster of CEPH_CONF=" + conf + " (" + r.stdout().trim()
                    + "); it is not stopped at the end");
            return cluster;
        }

        requireTools(CLUSTER_TOOLS);
        Path script = home().resolve("scripts").resolve("ceph-cluster.sh");
        Path dir = clusterDir();
        CephCluster cluster = new CephCluster(dir.resolve("ceph.conf"), dir, script);
        // A JVM killed before its shutdown hook ran leaves its cluster behind: only that one is
        // stopped (the script checks every pid belongs to this directory).
        Commands.Result leftover = cluster.run(STOP_TIMEOUT, "bash", script.toString(), "stop", dir.toString(), "--purge");
        if (!leftover.succeeded()) {
            Assertions.fail("cannot clear the previous cluster directory " + dir + ":\n" + leftover.describe());
        }
        Commands.Result start = cluster.run(START_TIMEOUT, "bash", script.toString(), "start", dir.toString());
        if (!start.succeeded()) {
            Assertions.fail("the test Ceph cluster did not start (" + script + " start " + dir + ").\n"
                    + "If the ports are taken, another cluster is running: stop it, or set CEPH_CONF to use it.\n"
                    + start.describe());
        }
        if (!start.stdout().contains("export CEPH_CONF=" + cluster.conf)) {
            cluster.stopQuietly();
            Assertions.fail("ceph-cluster.sh did not print `export CEPH_CONF=" + cluster.conf + "`:\n" + start.describe());
        }
        Runtime.getRuntime().addShutdownHook(new Thread(cluster::stopQuietly, "ceph-cluster-stop"));
        System.out.println("[ceph] cluster started in " + start.took().toMillis() + " ms: CEPH_CONF=" + cluster.conf);
        return cluster;
    }

    /** Shutdown hook: stop and purge this JVM's cluster, saying so when that fails. */
    private void stopQuietly() {
        Commands.Result r = run(STOP_TIMEOUT, "bash", script.toString(), "stop", dir.toString(), "--purge");
        if (!r.succeeded()) {
            System.err.println("[ceph] stopping the test cluster failed: " + r.describe());
        }
    }

    /** Fails, naming every missing tool and its package, unless all are on PATH. */
    private static void requireTools(String[][] tools) {
        Set<String> missing = new LinkedHashSet<>();
        for (String[] t : tools) {
            if (onPath(t[0]) == null) {
                missing.add(t[0] + " (Debian package " + t[1] + ")");
            }
        }
        if (!missing.isEmpty()) {
            Assertions.fail("Ceph is not installed: missing " + String.join(", ", missing) + " on PATH="
                    + System.getenv("PATH") + ".\nFix: " + INSTALL_HINT);
        }
    }

    private static Path onPath(String program) {
        String path = System.getenv("PATH");
        if (path == null) {
            return null;
        }
        for (String d : path.split(File.pathSeparator)) {
            if (!d.isEmpty()) {
                Path p = Path.of(d, program);
                if (Files.isRegularFile(p) && Files.isExecutable(p)) {
                    return p;
                }
            }
        }
        return null;
    }

    /** The project root: -Drbdnbd.home (set by the it-tests pom), else found from the working directory. */
    static Path home() {
        List<Path> candidates = new ArrayList<>();
        String h = System.getProperty("rbdnbd.home");
        if (h != null && !h.isBlank()) {
            candidates.add(Path.of(h));
        }
        Path cwd = Path.of("").toAbsolutePath();
        candidates.add(cwd);
        if (cwd.getParent() != null) {
            candidates.add(cwd.getParent());
        }
        for (Path c : candidates) {
            if (Files.isRegularFile(c.resolve("scripts").resolve("ceph-cluster.sh"))) {
                return c.toAbsolutePath().normalize();
            }
        }
        throw new AssertionError("cannot find scripts/ceph-cluster.sh; looked in " + candidates);
    }

    /** -Drbdnbd.ceph.dir, else it-tests/target/ceph (kept short: admin socket paths must fit 107 bytes). */
    private static Path clusterDir() {
        String d = System.getProperty("rbdnbd.ceph.dir");
        if (d != null && !d.isBlank()) {
            return Path.of(d).toAbsolutePath().normalize();
        }
        return home().resolve("it-tests").resolve("target").resolve("ceph");
    }

    /** The cluster's ceph.conf (with the path of the client.admin keyring in it). */
    public Path conf() {
        return conf;
    }

    /** Environment for child processes that talk to the cluster (librbd reads CEPH_CONF). */
    public Map<String, String> env() {
        return Map.of("CEPH_CONF", conf.toString());
    }

    /** Whether this JVM started the cluster (and may stop its OSD); false for an operator's cluster. */
    public boolean ownsCluster() {
        return dir != null;
    }

    /** The cluster's directory (daemon logs in {@code log/}), for failure messages; null for an operator's cluster. */
    public Path dir() {
        return dir;
    }

    /** {@code rbd ARGS} against the cluster; its stdout, or a failure quoting its stderr. */
    public String rbd(String... args) {
        return ok(DEFAULT_TIMEOUT, "rbd", args).stdout();
    }

    /** {@code ceph ARGS} against the cluster; its stdout, or a failure quoting its stderr. */
    public String ceph(String... args) {
        return ok(DEFAULT_TIMEOUT, "ceph", args).stdout();
    }

    /**
     * Creates a fresh image {@code rbd/it-NAME-XXXXXX} ({@code XXXXXX} random hex, so reruns and
     * other tests never collide) of SIZE ({@code rbd create --size}: {@code 64M}, {@code 1G}...)
     * with the default features; returns its spec {@code pool/image}.
     */
    public String createImage(String name, String size) {
        String clean = name.replaceAll("[^A-Za-z0-9_.-]", "-");
        String spec = POOL + "/it-" + clean + "-" + String.format("%06x", ThreadLocalRandom.current().nextInt(1 << 24));
        rbd("create", "--size", size, spec);
        return spec;
    }

    /** Removes an image ({@code pool/image}); fails when it is missing or still open somewhere. */
    public void removeImage(String spec) {
        rbd("rm", "--no-progress", spec);
    }

    /**
     * Stops the OSD (SIGTERM: the mon marks it down at once, and memstore saves the data to disk)
     * and waits until {@code ceph osd dump} shows {@code osd.0 down}. I/O to any image then waits
     * until {@link #startOsd()}: call that in a {@code finally}. Skips the test on an operator's
     * cluster.
     */
    public void stopOsd() {
        requireOwned("stop the OSD");
        Commands.Result r = run(OSD_TIMEOUT, "bash", script.toString(), "osd-stop", dir.toString());
        if (!r.succeeded()) {
            Assertions.fail("stopping osd.0 failed:\n" + r.describe());
        }
    }

    /** Starts the OSD again (a no-op when it runs) and waits until {@code osd.0 up}; its data is back. */
    public void startOsd() {
        requireOwned("start the OSD");
        Commands.Result r = run(OSD_TIMEOUT, "bash", script.toString(), "osd-start", dir.toString());
        if (!r.succeeded()) {
            Assertions.fail("starting osd.0 failed:\n" + r.describe());
        }
    }

    private void requireOwned(String what) {
        Assumptions.assumeTrue(ownsCluster(), () -> "Skipped: cannot " + what + " of the operator's cluster (CEPH_CONF="
                + conf + "); fault tests need the tests' own cluster (unset CEPH_CONF)");
    }

    /** Runs {@code program ARGS} with {@link #env()} and fails, quoting its output, unless it exits 0 in time. */
    public Commands.Result ok(Duration timeout, String program, String... args) {
        List<String> cmd = new ArrayList<>();
        cmd.add(program);
        Collections.addAll(cmd, args);
        Commands.Result r = run(timeout, cmd.toArray(String[]::new));
        if (!r.succeeded()) {
            Assertions.fail(r.describe());
        }
        return r;
    }

    /**
     * Runs a command with {@link #env()} without judging it: a timeout kills it and is reported in
     * the result (fault tests expect some commands to hang). Output goes to files, never pipes.
     */
    public Commands.Result run(Duration timeout, String... command) {
        return Commands.execute(timeout, null, env(), command);
    }
}
