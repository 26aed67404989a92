package io.rbdnbd.nativeio;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * The kernel NBD driver's generic-netlink interface (family "nbd", version 1): CONNECT with
 * several sockets and a backend identifier, DISCONNECT, RECONFIGURE. Messages are built by hand
 * (nlmsghdr, genlmsghdr, 4-byte aligned attributes, host byte order); each request asks for an
 * acknowledgement, and a negative one is raised as a {@link NativeException} naming the command.
 */
public final class NbdNetlink implements AutoCloseable {
    private static final int AF_NETLINK = 16;
    private static final int SOCK_RAW = 3;
    private static final int NETLINK_GENERIC = 16;
    private static final int NLMSG_ERROR = 2;
    private static final int NLM_F_REQUEST = 1;
    private static final int NLM_F_ACK = 4;
    private static final int GENL_ID_CTRL = 0x10;
    private static final int CTRL_CMD_GETFAMILY = 3;
    private static final int CTRL_ATTR_FAMILY_ID = 1;
    private static final int CTRL_ATTR_FAMILY_NAME = 2;
    private static final int NLA_F_NESTED = 1 << 15;

    public static final int CMD_CONNECT = 1;
    public static final int CMD_DISCONNECT = 2;
    public static final int CMD_RECONFIGURE = 3;

    public static final int ATTR_INDEX = 1;
    public static final int ATTR_SIZE_BYTES = 2;
    public static final int ATTR_BLOCK_SIZE_BYTES = 3;
    public static final int ATTR_TIMEOUT = 4;
    public static final int ATTR_SERVER_FLAGS = 5;
    public static final int ATTR_CLIENT_FLAGS = 6;
    public static final int ATTR_SOCKETS = 7;
    public static final int ATTR_DEAD_CONN_TIMEOUT = 8;
    public static final int ATTR_BACKEND_IDENTIFIER = 10;
    private static final int SOCK_ITEM = 1;
    private static final int SOCK_FD = 1;

    private final int fd;
    private final int family;
    private int seq;

    private NbdNetlink(int fd, int family) {
        this.fd = fd;
        this.family = family;
    }

    /** Whether the kernel offers the "nbd" genl family (old kernels and some builds only have the ioctls). */
    public static boolean available() {
        try (NbdNetlink nl = open()) {
            return true;
        } catch (NativeException e) {
            return false;
        }
    }

    /** @throws NativeException ENOENT when the kernel has no "nbd" genl family (driver not loaded) */
    public static NbdNetlink open() throws NativeException {
        int fd = LibC.socketFd(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC, "netlink socket");
        try {
            byte[] addr = ByteBuffer.allocate(12).order(ByteOrder.nativeOrder()).putShort((short) AF_NETLINK).array();
            LibC.bindFd(fd, addr, "bind netlink socket");
            NbdNetlink probe = new NbdNetlink(fd, GENL_ID_CTRL);
            Message m = probe.message(GENL_ID_CTRL, CTRL_CMD_GETFAMILY).string(CTRL_ATTR_FAMILY_NAME, "nbd");
            ByteBuffer reply = probe.transact(m, "resolve genl family nbd");
            Integer id = findAttr(reply, CTRL_ATTR_FAMILY_ID);
            if (id == null) {
                throw new NativeException("resolve genl family nbd: no family id in the reply", Errno.EIO);
            }
            return new NbdNetlink(fd, reply.getShort(id) & 0xffff);
        } catch (NativeException e) {
            LibC.closeFd(fd);
            throw e;
        }
    }

    /**
     * CONNECT: the kernel attaches {@code sockets} to device {@code index} (-1: the kernel picks
     * a free one) and returns the index it used.
     */
    public int connect(int index, List<Integer> sockets, long size, long blockSize, long timeoutSeconds,
                       long serverFlags, long deadConnTimeoutSeconds, String backendId) throws NativeException {
        Message m = message(family, CMD_CONNECT);
        if (index >= 0) {
            m.u32(ATTR_INDEX, index);
        }
        m.u64(ATTR_SIZE_BYTES, size).u64(ATTR_BLOCK_SIZE_BYTES, blockSize).u64(ATTR_TIMEOUT, timeoutSeconds)
                .u64(ATTR_SERVER_FLAGS, serverFlags).u64(ATTR_DEAD_CONN_TIMEOUT, deadConnTimeoutSeconds)
                .string(ATTR_BACKEND_IDENTIFIER, backendId);
        m.sockets(sockets);
        ByteBuffer reply = transact(m, "netlink NBD_CMD_CONNECT" + (index >= 0 ? " /dev/nbd" + index : ""));
        Integer at = findAttr(reply, ATTR_INDEX);
        if (at == null) {
            throw new NativeException("netlink NBD_CMD_CONNECT: no device index in the reply", Errno.EIO);
        }
        return reply.getInt(at);
    }

    public void disconnect(int index) throws NativeException {
        transact(message(family, CMD_DISCONNECT).u32(ATTR_INDEX, index), "netlink NBD_CMD_DISCONNECT /dev/nbd" + index);
    }

    /**
     * Re-attach: RECONFIGURE hands new sockets to a device whose server died (its sockets are
     * dead, waiting out the dead-connection timeout). The kernel checks the cookie.
     */
    public void reconnect(int index, List<Integer> sockets, String backendId) throws NativeException {
        Message m = message(family, CMD_RECONFIGURE).u32(ATTR_INDEX, index).string(ATTR_BACKEND_IDENTIFIER, backendId);
        m.sockets(sockets);
        transact(m, "netlink NBD_CMD_RECONFIGURE (re-attach) /dev/nbd" + index);
    }

    /** RECONFIGURE the size; a 6.1 kernel refuses it without the backend identifier it was connected with. */
    public void resize(int index, long size, String backendId) throws NativeException {
        transact(message(family, CMD_RECONFIGURE).u32(ATTR_INDEX, index).u64(ATTR_SIZE_BYTES, size)
                .string(ATTR_BACKEND_IDENTIFIER, backendId), "netlink NBD_CMD_RECONFIGURE /dev/nbd" + index);
    }

    @Override
    public void close() throws NativeException {
        LibC.closeFd(fd);
    }

    private Message message(int type, int cmd) {
        return new Message(type, cmd, ++seq);
    }

    /**
     * Sends, then reads until the acknowledgement; returns the attributes of a data reply (if one
     * came before the ack), positioned at the first attribute.
     */
    private synchronized ByteBuffer transact(Message m, String what) throws NativeException {
        LibC.sendMessage(fd, m.bytes(), what);
        byte[] buf = new byte[64 * 1024];
        ByteBuffer data = null;
        while (true) {
            int n = LibC.receiveMessage(fd, buf, what);
            ByteBuffer b = ByteBuffer.wrap(buf, 0, n).order(ByteOrder.nativeOrder());
            while (b.remaining() >= 16) {
                int start = b.position();
                int len = b.getInt(start);
                int type = b.getShort(start + 4) & 0xffff;
                int rseq = b.getInt(start + 8);
                if (len < 16 || start + len > n) {
                    throw new NativeException(what + ": malformed netlink reply", Errno.EIO);
                }
                if (rseq == m.seq) {
                    if (type == NLMSG_ERROR) {
                        int error = b.getInt(start + 16);
                        if (error != 0) {
                            throw new NativeException(what, -error);
                        }
                        return data != null ? data : ByteBuffer.allocate(0);
                    }
                    // a data reply: genl header (4 bytes) then attributes
                    byte[] copy = new byte[len - 20];
                    System.arraycopy(buf, start + 20, copy, 0, copy.length);
                    data = ByteBuffer.wrap(copy).order(ByteOrder.nativeOrder());
                }
                b.position(start + align(len));
            }
        }
    }

    /** Offset of the payload of top-level attribute {@code type}, or null. */
    private static Integer findAttr(ByteBuffer attrs, int type) {
        int p = 0;
        while (p + 4 <= attrs.limit()) {
            int len = attrs.getShort(p) & 0xffff;
            int t = attrs.getShort(p + 2) & 0x3fff;
            if (len < 4) {
                return null;
            }
            if (t == type) {
                return p + 4;
            }
            p += align(len);
        }
        return null;
    }

    private static int align(int n) {
        return (n + 3) & ~3;
    }

    /** A netlink request under construction. */
    private static final class Message {
        private final ByteBuffer b = ByteBuffer.allocate(4096).order(ByteOrder.nativeOrder());
        private final int seq;

        Message(int type, int cmd, int seq) {
            this.seq = seq;
            b.putInt(0).putShort((short) type).putShort((short) (NLM_F_REQUEST | NLM_F_ACK)).putInt(seq).putInt(0);
            b.put((byte) cmd).put((byte) 1).putShort((short) 0);
        }

        Message u32(int type, int v) {
            b.putShort((short) 8).putShort((short) type).putInt(v);
            return this;
        }

        Message u64(int type, long v) {
            b.putShort((short) 12).putShort((short) type).putLong(v);
            return this;
        }

        Message string(int type, String s) {
            byte[] z = (s + "\0").getBytes(StandardCharsets.UTF_8);
            b.putShort((short) (4 + z.length)).putShort((short) type).put(z);
            while (b.position() % 4 != 0) {
                b.put((byte) 0);
            }
            return this;
        }

        /** NBD_ATTR_SOCKETS: one nested SOCK_ITEM { SOCK_FD } per socket. */
        Message sockets(List<Integer> fds) {
            int start = begin(ATTR_SOCKETS);
            for (int fd : fds) {
                int item = begin(SOCK_ITEM);
                u32(SOCK_FD, fd);
                end(item);
            }
            end(start);
            return this;
        }

        int begin(int type) {
            int at = b.position();
            b.putShort((short) 0).putShort((short) (type | NLA_F_NESTED));
            return at;
        }

        void end(int at) {
            b.putShort(at, (short) (b.position() - at));
        }

        byte[] bytes() {
            b.putInt(0, b.position());
            byte[] out = new byte[b.position()];
            System.arraycopy(b.array(), 0, out, 0, out.length);
            return out;
        }
    }
}
