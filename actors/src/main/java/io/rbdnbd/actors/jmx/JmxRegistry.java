package io.rbdnbd.actors.jmx;

import javax.management.InstanceAlreadyExistsException;
import javax.management.InstanceNotFoundException;
import javax.management.JMException;
import javax.management.MBeanServer;
import javax.management.MalformedObjectNameException;
import javax.management.ObjectName;
import java.lang.management.ManagementFactory;

/**
 * Registers the daemon's MXBeans on an MBeanServer (the platform one, which jconsole attaches to
 * by pid and {@link JmxRemote} serves) as {@code io.rbdnbd:type=Daemon} and
 * {@code io.rbdnbd:type=Device,name=nbd3}. Registering a name again replaces what was there (a
 * device mapped anew); unregistering what is not registered does nothing.
 */
public final class JmxRegistry {
    public static final String DOMAIN = "io.rbdnbd";
    /** Characters ObjectName does not allow in an unquoted value. */
    private static final String SPECIAL = ",=:\"*?\n";

    private final MBeanServer server;

    /** On the platform MBeanServer. */
    public JmxRegistry() {
        this(ManagementFactory.getPlatformMBeanServer());
    }

    public JmxRegistry(MBeanServer server) {
        this.server = server;
    }

    /** A registry per the settings: registering does nothing when {@code rbdnbd.jmx.enabled} is off. */
    public static JmxRegistry from(JmxSettings settings) {
        return settings.enabled() ? new JmxRegistry() : new JmxRegistry(null);
    }

    public static ObjectName daemonName() {
        return name("type=Daemon");
    }

    /**
     * {@code io.rbdnbd:type=Device,name=nbd3} for {@code /dev/nbd3}; a name with characters an
     * ObjectName reserves is quoted ({@link ObjectName#unquote} gives it back).
     */
    public static ObjectName deviceName(String device) {
        String n = device.startsWith("/dev/") ? device.substring("/dev/".length()) : device;
        if (n.isEmpty()) {
            throw new IllegalArgumentException("no device name in \"" + device + "\"");
        }
        boolean quote = n.chars().anyMatch(c -> SPECIAL.indexOf(c) >= 0 || c == '\\');
        return name("type=Device,name=" + (quote ? ObjectName.quote(n) : n));
    }

    public ObjectName registerDaemon(DaemonMXBean daemon) {
        return register(daemonName(), daemon);
    }

    /** @param device {@code /dev/nbdN}: names the MXBean */
    public ObjectName registerDevice(String device, DeviceMXBean view) {
        return register(deviceName(device), view);
    }

    /** Unregisters the device's MXBean; false when none was registered. */
    public boolean unregisterDevice(String device) {
        return unregister(deviceName(device));
    }

    /** Unregisters {@code name}; false when it was not registered (or JMX is off). */
    public boolean unregister(ObjectName name) {
        if (server == null) {
            return false;
        }
        try {
            server.unregisterMBean(name);
            return true;
        } catch (InstanceNotFoundException e) {
            return false; // never registered, or unregistered already
        } catch (JMException e) {
            throw new IllegalStateException("cannot unregister " + name + ": " + e, e);
        }
    }

    /** Is {@code name} registered (false when JMX is off)? */
    public boolean isRegistered(ObjectName name) {
        return server != null && server.isRegistered(name);
    }

    private ObjectName register(ObjectName name, Object bean) {
        if (server == null) {
            return name;
        }
        for (int attempt = 0; ; attempt++) {
            try {
                server.registerMBean(bean, name);
                return name;
            } catch (InstanceAlreadyExistsException e) {
                if (attempt > 0) { // someone else keeps registering it: not ours to fight over
                    throw new IllegalStateException(name + " is registered already", e);
                }
                unregister(name);
            } catch (JMException e) {
                throw new IllegalStateException("cannot register " + name + ": " + e, e);
            }
        }
    }

    private static ObjectName name(String properties) {
        try {
            return new ObjectName(DOMAIN + ":" + properties);
        } catch (MalformedObjectNameException e) {
            throw new IllegalArgumentException(e.getMessage(), e);
        }
    }
}
