package io.rbdnbd.actors.jmx;

import java.util.List;

/**
 * The daemon as JMX shows it ({@code io.rbdnbd:type=Daemon}): its devices, and mapping and
 * unmapping from jconsole or any JMX client. Implemented by the daemon.
 *
 * <p>Operations report failure with {@link IllegalArgumentException} (a bad image spec, option
 * or device) or {@link IllegalStateException} (mapping or unmapping failed), carrying the
 * message {@code rbd-nbd} would print: a remote client can deserialize only the JDK's exception
 * types, never the daemon's own.
 */
public interface DaemonMXBean {
    /** The devices this daemon serves, {@code /dev/nbdN}, in mapping order. */
    List<String> getDevices();

    /**
     * Maps {@code image} as {@code rbd-nbd map} would and returns the device once it is usable.
     *
     * @param image   {@code [pool/[namespace/]]image[@snap]}, {@code file:PATH} or {@code memory:SIZE}
     * @param options the device's settings as in {@code rbdnbd.daemon.devices} (HOCON, the keys of
     *                {@code rbdnbd.daemon.device-defaults}), e.g. {@code read-only = true, device = "/dev/nbd3"};
     *                "" for none
     * @return the device, {@code /dev/nbdN}
     */
    String map(String image, String options);

    /**
     * Disconnects the device and closes its image, as {@code rbd-nbd unmap}: requests in flight
     * are answered first.
     *
     * @param deviceOrImage {@code /dev/nbdN}, or the image spec when only one device maps it
     * @param force         do not wait for what a graceful unmap waits for (the device in use,
     *                      requests the image does not answer): those get EIO
     */
    void unmap(String deviceOrImage, boolean force);

    /**
     * Stops serving the device without disconnecting it, as Ceph's {@code rbd-nbd detach}: the
     * kernel holds its I/O for the reattach timeout, for {@code rbd-nbd attach} to take over.
     *
     * @param deviceOrImage {@code /dev/nbdN}, or the image spec when only one device maps it
     */
    void detach(String deviceOrImage);
}
