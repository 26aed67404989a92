package io.rbdnbd.engine.backend;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigValue;
import io.rbdnbd.nativeio.ceph.RadosCluster;

import java.util.LinkedHashMap;
import java.util.Map;

/** The {@code rbdnbd.ceph} section of the configuration (documented in reference.conf). */
public final class CephSettings {
    private CephSettings() {
    }

    public static RadosCluster.Settings from(Config root) {
        Config c = root.getConfig("rbdnbd.ceph");
        Map<String, String> options = new LinkedHashMap<>();
        for (Map.Entry<String, ConfigValue> e : c.getConfig("options").entrySet()) {
            options.put(e.getKey(), String.valueOf(e.getValue().unwrapped()));
        }
        String id = c.getString("id");
        if (id.startsWith("client.")) {
            id = id.substring("client.".length());
        }
        if (id.isEmpty()) {
            throw new IllegalArgumentException("rbdnbd.ceph.id must name a cephx user, e.g. admin");
        }
        return new RadosCluster.Settings(c.getString("cluster"), id, blankToNull(c.getString("conf")),
                blankToNull(c.getString("keyring")), blankToNull(c.getString("mon-host")),
                c.getDuration("connect-timeout"), options);
    }

    private static String blankToNull(String s) {
        return s.isBlank() ? null : s;
    }
}
