package io.rbdnbd.actors.jmx;

import com.typesafe.config.ConfigException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import javax.management.MBeanServer;
import javax.management.remote.JMXConnectorServer;
import javax.management.remote.JMXConnectorServerFactory;
import javax.management.remote.JMXServiceURL;
import javax.management.remote.rmi.RMIConnectorServer;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.rmi.NoSuchObjectException;
import java.rmi.registry.LocateRegistry;
import java.rmi.registry.Registry;
import java.rmi.server.UnicastRemoteObject;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * The remote JMX connector ({@code rbdnbd.jmx.remote}): an RMI registry and the JMX RMI
 * connector on one port, bound to one address, with password authentication (and, given an
 * access file, per-user read-only or read-write access). Clients connect with
 * {@code service:jmx:rmi:///jndi/rmi://HOST:PORT/jmxrmi} (jconsole: {@code HOST:PORT}).
 *
 * <p>The password file is checked as the JDK's own agent checks it: it must exist and be
 * readable by its owner only. Unlike that agent, clear-text passwords in it are not rewritten
 * as hashes: the file stays as its administrator wrote it. RMI names the host in the stubs it
 * hands out from {@code java.rmi.server.hostname}; unless set on the command line, it is set
 * to the configured host, so that clients connect to the address listened on.
 *
 * <p>Credentials cross the network in clear (no TLS): keep the host to 127.0.0.1 or a trusted
 * network.
 */
public final class JmxRemote implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(JmxRemote.class);
    private static final String SETTINGS = JmxSettings.PATH + ".remote.";

    private final JMXConnectorServer connector;
    private final Registry registry;

    private JmxRemote(JMXConnectorServer connector, Registry registry) {
        this.connector = connector;
        this.registry = registry;
    }

    /** Serves the platform MBeanServer; see {@link #start(JmxSettings, MBeanServer)}. */
    public static JmxRemote start(JmxSettings settings) throws IOException {
        return start(settings, ManagementFactory.getPlatformMBeanServer());
    }

    /**
     * Starts the connector when {@code settings} ask for one (a remote port); otherwise returns a
     * {@link JmxRemote} that serves nothing. {@link #close()} stops it.
     *
     * @throws ConfigException.BadValue when the password or access file is missing, unreadable,
     *                                  or the password file may be read by others
     * @throws IOException              when the port cannot be listened on
     */
    public static JmxRemote start(JmxSettings settings, MBeanServer server) throws IOException {
        if (!settings.remote()) {
            return new JmxRemote(null, null);
        }
        checkPasswordFile(settings.passwordFile());
        if (!settings.accessFile().isEmpty()) {
            checkReadable(settings.accessFile(), SETTINGS + "access-file");
        }
        String host = settings.remoteHost();
        InetAddress address = InetAddress.getByName(host);
        if (System.getProperty("java.rmi.server.hostname") == null && !address.isAnyLocalAddress()) {
            System.setProperty("java.rmi.server.hostname", host);
        }
        int port = settings.remotePort();
        BoundServerSocketFactory sockets = new BoundServerSocketFactory(address);
        Registry registry;
        try {
            registry = LocateRegistry.createRegistry(port, null, sockets);
        } catch (IOException e) {
            throw new IOException("cannot listen on " + host + ":" + port + " for JMX: " + e.getMessage(), e);
        }
        try {
            String hostPort = (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
            JMXServiceURL url = new JMXServiceURL("service:jmx:rmi://" + hostPort + "/jndi/rmi://" + hostPort + "/jmxrmi");
            Map<String, Object> env = new HashMap<>();
            env.put(RMIConnectorServer.RMI_SERVER_SOCKET_FACTORY_ATTRIBUTE, sockets);
            env.put("jmx.remote.x.password.file", settings.passwordFile());
            if (!settings.accessFile().isEmpty()) {
                env.put("jmx.remote.x.access.file", settings.accessFile());
            }
            JMXConnectorServer connector = JMXConnectorServerFactory.newJMXConnectorServer(url, env, server);
            connector.start();
            log.info("JMX served remotely on {} (password file {}{})", connector.getAddress(), settings.passwordFile(),
                    settings.accessFile().isEmpty() ? "" : ", access file " + settings.accessFile());
            return new JmxRemote(connector, registry);
        } catch (IOException | RuntimeException e) {
            unexport(registry);
            throw e;
        }
    }

    /** Where clients connect; empty when no connector was started. */
    public Optional<JMXServiceURL> address() {
        return connector == null ? Optional.empty() : Optional.of(connector.getAddress());
    }

    /** Stops the connector (closing its client connections) and the registry; again does nothing. */
    @Override
    public void close() {
        if (connector != null) {
            try {
                connector.stop();
            } catch (IOException e) {
                log.warn("stopping the JMX connector failed: {}", e.toString());
            }
        }
        if (registry != null) {
            unexport(registry);
        }
    }

    private static void unexport(Registry registry) {
        try {
            UnicastRemoteObject.unexportObject(registry, true);
        } catch (NoSuchObjectException e) {
            // unexported already
        }
    }

    /** As the JDK's agent: a password file others may read is refused. */
    private static void checkPasswordFile(String file) {
        String setting = SETTINGS + "password-file";
        checkReadable(file, setting);
        Set<PosixFilePermission> perms;
        try {
            perms = Files.getPosixFilePermissions(Path.of(file));
        } catch (UnsupportedOperationException e) {
            return; // no POSIX permissions to check on this file system
        } catch (IOException e) {
            throw new ConfigException.BadValue(setting, "cannot read the permissions of " + file + ": " + e);
        }
        Set<PosixFilePermission> others = EnumSet.of(PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE,
                PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE,
                PosixFilePermission.OTHERS_EXECUTE);
        others.retainAll(perms);
        if (!others.isEmpty()) {
            throw new ConfigException.BadValue(setting, file + " is open to other users ("
                    + PosixFilePermissions.toString(perms) + "): make it readable by its owner only (chmod 600 " + file
                    + "), as the JDK's own JMX agent requires");
        }
    }

    private static void checkReadable(String file, String setting) {
        Path p = Path.of(file);
        if (!Files.isRegularFile(p)) {
            throw new ConfigException.BadValue(setting, file + " does not exist or is not a file");
        }
        if (!Files.isReadable(p)) {
            throw new ConfigException.BadValue(setting, file + " is not readable by the daemon's user");
        }
    }
}
