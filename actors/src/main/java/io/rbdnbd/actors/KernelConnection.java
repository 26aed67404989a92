package io.rbdnbd.actors;

import io.rbdnbd.engine.protocol.Nbd;
import io.rbdnbd.engine.stream.FdConnection;
import io.rbdnbd.nativeio.Errno;
import io.rbdnbd.nativeio.LibC;
import io.rbdnbd.nativeio.NativeException;
import io.rbdnbd.nativeio.NbdDevice;
import io.rbdnbd.nativeio.NbdNetlink;

import java.util.ArrayList;
import java.util.List;
import java.util.OptionalInt;

/**
 * A kernel NBD device as rbdnbd holds it, in one of the two ways the kernel offers: the ioctls
 * ({@link Ioctl}: one socket, NBD_DO_IT blocking on a thread until the device is disconnected,
 * the device gone with its server) or the nbd generic-netlink family ({@link Netlink}: two
 * sockets, the device held by the kernel for a re-attach when its server dies). What differs
 * between them lives here, behind one type: connecting, resizing, the read-only flag and
 * disconnecting. {@link KernelAttach} runs the streams and the lifecycle on top; {@code unmap}'s
 * orphan path uses {@link #disconnectOrphan}.
 */
public sealed interface KernelConnection permits KernelConnection.Ioctl, KernelConnection.Netlink {

    /** Sockets per device on the netlink path. */
    int NETLINK_SOCKETS = 2;

    /** {@code /dev/nbdN}. */
    String path();

    int index();

    /** Our ends of the device's sockets. */
    List<FdConnection> connections();

    /**
     * Tells the kernel the image now has {@code size} bytes. {@code sizeApplied} runs once the
     * kernel has the size, before any partition re-read: that reads through the device, which may
     * wait for whoever waits for the size (librbd's notification).
     */
    void resize(long size, Runnable sizeApplied) throws NativeException;

    /** Asks the kernel to disconnect the device; requests in flight are answered first. */
    void disconnect() throws NativeException;

    /**
     * The block device's own read-only flag (BLKROSET), set on every connection either way: it
     * belongs to the device node and outlives the mapping, so a read-write map must clear what an
     * earlier read-only one set (the kernel's NBD_FLAG_READ_ONLY alone leaves it).
     */
    default void setReadOnly(boolean readOnly) throws NativeException {
        try (NbdDevice d = NbdDevice.open(path())) {
            d.setReadOnly(readOnly);
        }
    }

    /** A reason to refuse attaching that is not a failed system call. */
    final class AttachException extends Exception {
        private static final long serialVersionUID = 1L;

        AttachException(String message) {
            super(message);
        }
    }

    /** Kernel-visible flags: the ones the driver acts on, plus read-only. */
    static int kernelFlags(boolean readOnly, boolean trim) {
        int flags = Nbd.FLAG_HAS_FLAGS | Nbd.FLAG_SEND_FLUSH | Nbd.FLAG_SEND_FUA;
        if (readOnly) {
            return flags | Nbd.FLAG_READ_ONLY;
        }
        return trim ? flags | Nbd.FLAG_SEND_TRIM | Nbd.FLAG_SEND_WRITE_ZEROES : flags;
    }

    /** Connects a device of {@code size} bytes as {@code params} ask: over netlink where the kernel has it. */
    static KernelConnection connect(KernelAttach.Params params, long size, boolean readOnly)
            throws NativeException, AttachException {
        return params.netlink() && NbdNetlink.available() ? Netlink.connect(params, size, readOnly)
                : Ioctl.connect(params, size, readOnly);
    }

    /**
     * Disconnects a device whose server process is gone: a netlink device the kernel holds for a
     * re-attach (netlink DISCONNECT), or, without netlink, with NBD_DISCONNECT.
     */
    static void disconnectOrphan(String device) throws NativeException {
        if (NbdNetlink.available()) {
            try (NbdNetlink nl = NbdNetlink.open()) {
                nl.disconnect(NbdDevice.index(device));
            }
        } else {
            try (NbdDevice d = NbdDevice.open(device)) {
                d.disconnect();
            }
        }
    }

    /**
     * The ioctl way: NBD_SET_SOCK with one socket; {@link #doIt} then blocks (on a thread of the
     * kernel-attach dispatcher) until the device is disconnected, and the device is gone with it.
     */
    record Ioctl(String path, int index, List<FdConnection> connections, NbdDevice device) implements KernelConnection {

        static Ioctl connect(KernelAttach.Params params, long size, boolean readOnly)
                throws NativeException, AttachException {
            String path = params.device();
            if (path == null) {
                OptionalInt free = NbdDevice.firstFree();
                if (free.isEmpty()) {
                    throw new AttachException("no free nbd device (all /dev/nbdN are in use)");
                }
                path = "/dev/nbd" + free.getAsInt();
            }
            NbdDevice device;
            try {
                device = NbdDevice.open(path);
            } catch (NativeException e) {
                throw new AttachException(explainOpen(path, e));
            }
            int[] pair;
            try {
                pair = LibC.socketPair();
            } catch (NativeException e) {
                closeQuietly(device);
                throw e;
            }
            try {
                device.setBlockSize(512);
                device.setSize(size);
                device.setFlags(kernelFlags(readOnly, params.trim()));
                device.setTimeout(params.ioTimeoutSeconds());
                device.setSocket(pair[0]);
            } catch (NativeException e) {
                try {
                    device.clearSocket();
                } catch (NativeException ignored) {
                    // nothing was attached
                }
                closeQuietly(device);
                closeFd(pair[1]);
                throw e;
            } finally {
                closeFd(pair[0]); // the kernel holds its own reference; ours would keep the socket alive
            }
            return new Ioctl(path, device.index(), List.of(new FdConnection(pair[1])), device);
        }

        /** NBD_DO_IT: serves the device until it is disconnected. Blocks. */
        void doIt() throws NativeException {
            device.doIt();
        }

        /** After NBD_DO_IT returned: clears the queue and the socket, closes the device's fd. */
        void release() throws NativeException {
            try {
                device.clearQueue();
                device.clearSocket();
            } finally {
                closeQuietly(device);
            }
        }

        /** NBD_SET_SIZE, then a partition re-read. */
        @Override
        public void resize(long size, Runnable sizeApplied) throws NativeException {
            device.setSize(size);
            sizeApplied.run();
            try {
                device.rereadPartitions();
            } catch (NativeException e) {
                // EINVAL without a partition table: nothing to re-read
            }
        }

        @Override
        public void disconnect() throws NativeException {
            device.disconnect();
        }
    }

    /**
     * The netlink way: CONNECT with {@link #NETLINK_SOCKETS} sockets and CAN_MULTI_CONN (the
     * kernel keeps at most 128 requests in flight per socket, so two give the engine its iodepth
     * of 256); the kernel holds the device for the re-attach timeout when its server dies.
     *
     * @param cookie the backend identifier given to the kernel, checked on re-attach and resize
     */
    record Netlink(String path, int index, List<FdConnection> connections, String cookie) implements KernelConnection {

        static Netlink connect(KernelAttach.Params params, long size, boolean readOnly) throws NativeException {
            int[] index = new int[1];
            List<FdConnection> ours = handOverSockets(kernelEnds -> {
                try (NbdNetlink nl = NbdNetlink.open()) {
                    index[0] = nl.connect(params.device() == null ? -1 : NbdDevice.index(params.device()), kernelEnds,
                            size, 512, params.ioTimeoutSeconds(),
                            kernelFlags(readOnly, params.trim()) | Nbd.FLAG_CAN_MULTI_CONN, params.reattachTimeoutSeconds(),
                            params.cookie());
                }
            });
            return new Netlink("/dev/nbd" + index[0], index[0], ours, params.cookie());
        }

        /** New sockets for a netlink device whose server died; the kernel replays what it held. */
        static Netlink reattach(KernelAttach.Params params) throws NativeException {
            int index = NbdDevice.index(params.device());
            List<FdConnection> ours = handOverSockets(kernelEnds -> {
                try (NbdNetlink nl = NbdNetlink.open()) {
                    nl.reconnect(index, kernelEnds, params.cookie());
                }
            });
            return new Netlink(params.device(), index, ours, params.cookie());
        }

        /** Netlink RECONFIGURE with the cookie. */
        @Override
        public void resize(long size, Runnable sizeApplied) throws NativeException {
            try (NbdNetlink nl = NbdNetlink.open()) {
                nl.resize(index, size, cookie);
            }
            sizeApplied.run();
        }

        @Override
        public void disconnect() throws NativeException {
            try (NbdNetlink nl = NbdNetlink.open()) {
                nl.disconnect(index);
            }
        }

        @FunctionalInterface
        private interface KernelHandOver {
            void give(List<Integer> kernelEnds) throws NativeException;
        }

        /**
         * Makes {@link #NETLINK_SOCKETS} socketpairs and gives one end of each to the kernel; returns
         * our ends. Our copies of the kernel's ends are closed either way (the kernel holds its own
         * references; ours would keep the sockets alive after the kernel lets go).
         */
        private static List<FdConnection> handOverSockets(KernelHandOver handOver) throws NativeException {
            List<int[]> pairs = new ArrayList<>();
            try {
                for (int i = 0; i < NETLINK_SOCKETS; i++) {
                    pairs.add(LibC.socketPair());
                }
                handOver.give(pairs.stream().map(p -> p[0]).toList());
                return pairs.stream().map(p -> new FdConnection(p[1])).toList();
            } catch (NativeException e) {
                for (int[] p : pairs) {
                    closeFd(p[1]);
                }
                throw e;
            } finally {
                for (int[] p : pairs) {
                    closeFd(p[0]);
                }
            }
        }
    }

    private static String explainOpen(String path, NativeException e) {
        return switch (e.errno()) {
            case Errno.ENOENT -> path + " does not exist (is the nbd driver loaded? modprobe nbd)";
            case Errno.EACCES, Errno.EPERM -> "cannot open " + path + ": permission denied (mapping needs root)";
            default -> "cannot open " + path + ": " + e.getMessage();
        };
    }

    private static void closeQuietly(NbdDevice d) {
        try {
            d.close();
        } catch (NativeException ignored) {
            // best effort on a failure path
        }
    }

    private static void closeFd(int fd) {
        try {
            LibC.closeFd(fd);
        } catch (NativeException ignored) {
            // best effort on a failure path
        }
    }
}
