package io.rbdnbd.actors.jmx;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;

/**
 * The {@code rbdnbd.jmx} section of the configuration (documented in reference.conf). Remote
 * JMX is refused without authentication: a port with no password file is a
 * {@link ConfigException.BadValue} naming {@code rbdnbd.jmx.remote.password-file}.
 *
 * @param remotePort   0: no remote connector
 * @param passwordFile "" only when {@code remotePort} is 0
 * @param accessFile   "": every user of the password file may read and call everything
 */
public record JmxSettings(boolean enabled, int remotePort, String remoteHost, String passwordFile,
                          String accessFile) {
    static final String PATH = "rbdnbd.jmx";

    public JmxSettings {
        if (remotePort < 0 || remotePort > 65535) {
            throw new ConfigException.BadValue(PATH + ".remote.port", "must be 0 (no remote JMX) or a TCP port,"
                    + " is " + remotePort);
        }
        if (remotePort != 0 && !enabled) {
            throw new ConfigException.BadValue(PATH + ".enabled", "is off, but " + PATH + ".remote.port is "
                    + remotePort + ": set enabled = on to serve JMX remotely, or remote.port = 0");
        }
        if (remotePort != 0 && passwordFile.isEmpty()) {
            throw new ConfigException.BadValue(PATH + ".remote.password-file", "remote JMX (" + PATH
                    + ".remote.port = " + remotePort + ") needs authentication: set " + PATH
                    + ".remote.password-file to a file of \"user password\" lines readable by the daemon's user"
                    + " only (chmod 600), or set " + PATH + ".remote.port = 0");
        }
        if (remotePort != 0 && remoteHost.isEmpty()) {
            throw new ConfigException.BadValue(PATH + ".remote.host", "must name the address to listen on"
                    + " (\"127.0.0.1\" for this machine only)");
        }
    }

    public static JmxSettings from(Config root) {
        Config c = root.getConfig(PATH);
        try {
            return new JmxSettings(
                    c.getBoolean("enabled"),
                    c.getInt("remote.port"),
                    c.getString("remote.host"),
                    c.getString("remote.password-file"),
                    c.getString("remote.access-file"));
        } catch (ConfigException.BadValue e) { // say where the port that asks for it was set
            throw new ConfigException.BadValue(c.getValue("remote.port").origin(), PATH + ".remote", e.getMessage());
        }
    }

    /** A remote connector is asked for. */
    public boolean remote() {
        return remotePort != 0;
    }
}
