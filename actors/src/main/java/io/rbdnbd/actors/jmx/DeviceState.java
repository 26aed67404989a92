package io.rbdnbd.actors.jmx;

/** What a device is doing, as {@link DeviceMXBean#getState()} and {@code rbd-nbd stats} say it. */
public enum DeviceState {
    /** The image is open; the kernel device is being attached. */
    MAPPING("mapping"),
    /** The kernel serves the device. */
    MAPPED("mapped"),
    /** The image's handle was lost: requests wait while it is opened again. */
    REOPENING("reopening"),
    /** Reopening failed for good: every request gets EIO until unmapped. */
    GAVE_UP("gave-up"),
    /** Disconnecting the device, then closing (flushing) the image. */
    UNMAPPING("unmapping"),
    /** Leaving a netlink device to the kernel (for attach), then closing the image. */
    DETACHING("detaching"),
    /** The daemon stops: ioctl devices are unmapped, netlink ones detached. */
    STOPPING("stopping");

    private final String label;

    DeviceState(String label) {
        this.label = label;
    }

    /** The name shown: lower case, as Ceph's tools spell states. */
    public String label() {
        return label;
    }
}
