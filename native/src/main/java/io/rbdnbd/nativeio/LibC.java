package io.rbdnbd.nativeio;

import com.sun.jna.LastErrorException;
import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;

import java.nio.ByteBuffer;

/**
 * Thin libc bindings (JNA direct mapping: one JNI hop per call, no reflection). Each public
 * method retries EINTR where the call is restartable and turns a failure into a
 * {@link NativeException} naming what was attempted. Buffers must be direct.
 */
public final class LibC {
    public static final int O_RDONLY = 0;
    public static final int O_RDWR = 2;
    public static final int O_CREAT = 0x40;
    public static final int O_EXCL = 0x80;
    public static final int O_CLOEXEC = 0x80000;

    public static final int SEEK_END = 2;
    public static final int SEEK_DATA = 3;
    public static final int SEEK_HOLE = 4;

    public static final int FALLOC_FL_KEEP_SIZE = 0x01;
    public static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    public static final int FALLOC_FL_ZERO_RANGE = 0x10;

    public static final int POSIX_FADV_WILLNEED = 3;

    public static final int AF_UNIX = 1;
    public static final int SOCK_STREAM = 1;
    public static final int SOCK_CLOEXEC = 0x80000;
    public static final int SHUT_RD = 0;
    public static final int SHUT_WR = 1;

    public static final int PR_SET_IO_FLUSHER = 57;

    static {
        Native.register(NativeLibrary.getInstance("c"));
    }

    private LibC() {
    }

    private static native int open(String path, int flags, int mode) throws LastErrorException;

    private static native int close(int fd) throws LastErrorException;

    private static native long pread(int fd, ByteBuffer buf, long count, long offset) throws LastErrorException;

    private static native long pwrite(int fd, ByteBuffer buf, long count, long offset) throws LastErrorException;

    private static native int fdatasync(int fd) throws LastErrorException;

    private static native int fallocate(int fd, int mode, long offset, long len) throws LastErrorException;

    private static native long lseek(int fd, long offset, int whence) throws LastErrorException;

    private static native int ftruncate(int fd, long length) throws LastErrorException;

    private static native int posix_fadvise(int fd, long offset, long len, int advice);

    private static native long read(int fd, ByteBuffer buf, long count) throws LastErrorException;

    private static native long write(int fd, ByteBuffer buf, long count) throws LastErrorException;

    private static native int socket(int domain, int type, int protocol) throws LastErrorException;

    private static native int bind(int fd, byte[] addr, int addrlen) throws LastErrorException;

    private static native long send(int fd, byte[] buf, long len, int flags) throws LastErrorException;

    private static native long recv(int fd, byte[] buf, long len, int flags) throws LastErrorException;

    private static native int socketpair(int domain, int type, int protocol, int[] sv) throws LastErrorException;

    private static native int shutdown(int fd, int how) throws LastErrorException;

    private static native int ioctl(int fd, long request, long arg) throws LastErrorException;

    private static native int prctl(int option, long arg2, long arg3, long arg4, long arg5) throws LastErrorException;

    private static native String strerror(int errnum);

    static String strerror0(int errno) {
        return strerror(errno);
    }

    public static int openFile(String path, int flags, int mode) throws NativeException {
        while (true) {
            try {
                return open(path, flags | O_CLOEXEC, mode);
            } catch (LastErrorException e) {
                if (e.getErrorCode() != Errno.EINTR) {
                    throw new NativeException("open " + path, e.getErrorCode());
                }
            }
        }
    }

    public static void closeFd(int fd) throws NativeException {
        try {
            close(fd); // never retried: on Linux the fd is gone even when close reports EINTR
        } catch (LastErrorException e) {
            if (e.getErrorCode() != Errno.EINTR) {
                throw new NativeException("close fd " + fd, e.getErrorCode());
            }
        }
    }

    /** Reads exactly {@code buf.remaining()} bytes at {@code offset}; bytes past end of file read as zero. */
    public static void preadFully(int fd, ByteBuffer buf, long offset) throws NativeException {
        while (buf.hasRemaining()) {
            long n;
            try {
                n = pread(fd, buf.slice(), buf.remaining(), offset);
            } catch (LastErrorException e) {
                if (e.getErrorCode() == Errno.EINTR) {
                    continue;
                }
                throw new NativeException("pread fd " + fd + " at " + offset, e.getErrorCode());
            }
            if (n == 0) { // end of file: a sparse image's tail reads as zeroes
                while (buf.hasRemaining()) {
                    buf.put((byte) 0);
                }
                return;
            }
            buf.position(buf.position() + (int) n);
            offset += n;
        }
    }

    /** Writes all of {@code buf.remaining()} bytes at {@code offset}. */
    public static void pwriteFully(int fd, ByteBuffer buf, long offset) throws NativeException {
        while (buf.hasRemaining()) {
            long n;
            try {
                n = pwrite(fd, buf.slice(), buf.remaining(), offset);
            } catch (LastErrorException e) {
                if (e.getErrorCode() == Errno.EINTR) {
                    continue;
                }
                throw new NativeException("pwrite fd " + fd + " at " + offset, e.getErrorCode());
            }
            buf.position(buf.position() + (int) n);
            offset += n;
        }
    }

    public static void fdatasyncFd(int fd) throws NativeException {
        while (true) {
            try {
                fdatasync(fd);
                return;
            } catch (LastErrorException e) {
                if (e.getErrorCode() != Errno.EINTR) {
                    throw new NativeException("fdatasync fd " + fd, e.getErrorCode());
                }
            }
        }
    }

    public static void fallocateFd(int fd, int mode, long offset, long len) throws NativeException {
        while (true) {
            try {
                fallocate(fd, mode, offset, len);
                return;
            } catch (LastErrorException e) {
                if (e.getErrorCode() != Errno.EINTR) {
                    throw new NativeException("fallocate fd " + fd + " mode " + mode + " at " + offset + "+" + len,
                            e.getErrorCode());
                }
            }
        }
    }

    /**
     * lseek; for SEEK_DATA and SEEK_HOLE an ENXIO (no more data past offset) is returned as -1
     * rather than thrown, since it is an answer, not a failure.
     */
    public static long lseekFd(int fd, long offset, int whence) throws NativeException {
        try {
            return lseek(fd, offset, whence);
        } catch (LastErrorException e) {
            if (e.getErrorCode() == 6 /* ENXIO */ && (whence == SEEK_DATA || whence == SEEK_HOLE)) {
                return -1;
            }
            throw new NativeException("lseek fd " + fd + " to " + offset + " whence " + whence, e.getErrorCode());
        }
    }

    public static void ftruncateFd(int fd, long length) throws NativeException {
        try {
            ftruncate(fd, length);
        } catch (LastErrorException e) {
            throw new NativeException("ftruncate fd " + fd + " to " + length, e.getErrorCode());
        }
    }

    /** posix_fadvise returns the error number instead of setting errno. */
    public static void fadviseFd(int fd, long offset, long len, int advice) throws NativeException {
        int r = posix_fadvise(fd, offset, len, advice);
        if (r != 0) {
            throw new NativeException("posix_fadvise fd " + fd + " at " + offset + "+" + len, r);
        }
    }

    /** Reads into a direct buffer at its position; 0 at end of stream. Retries EINTR. */
    public static int readFd(int fd, ByteBuffer direct) throws NativeException {
        while (true) {
            try {
                int n = (int) read(fd, direct.slice(), direct.remaining());
                direct.position(direct.position() + n);
                return n;
            } catch (LastErrorException e) {
                if (e.getErrorCode() != Errno.EINTR) {
                    throw new NativeException("read fd " + fd, e.getErrorCode());
                }
            }
        }
    }

    /** Writes every remaining byte of a direct buffer. Retries EINTR and short writes. */
    public static void writeFully(int fd, ByteBuffer direct) throws NativeException {
        while (direct.hasRemaining()) {
            try {
                int n = (int) write(fd, direct.slice(), direct.remaining());
                direct.position(direct.position() + n);
            } catch (LastErrorException e) {
                if (e.getErrorCode() != Errno.EINTR) {
                    throw new NativeException("write fd " + fd, e.getErrorCode());
                }
            }
        }
    }

    /** A connected pair of Unix stream sockets (close-on-exec). */
    public static int[] socketPair() throws NativeException {
        int[] sv = new int[2];
        try {
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        } catch (LastErrorException e) {
            throw new NativeException("socketpair", e.getErrorCode());
        }
        return sv;
    }

    public static void shutdownFd(int fd, int how) throws NativeException {
        try {
            shutdown(fd, how);
        } catch (LastErrorException e) {
            if (e.getErrorCode() != 107 /* ENOTCONN: already shut down by the peer */) {
                throw new NativeException("shutdown fd " + fd, e.getErrorCode());
            }
        }
    }

    /**
     * ioctl with an integer argument (every NBD and block ioctl we use takes one, or none).
     *
     * @param what names the call for the error, e.g. "NBD_SET_SOCK on /dev/nbd0"
     */
    public static int ioctlFd(int fd, long request, long arg, String what) throws NativeException {
        while (true) {
            try {
                return ioctl(fd, request, arg);
            } catch (LastErrorException e) {
                if (e.getErrorCode() != Errno.EINTR) {
                    throw new NativeException(what, e.getErrorCode());
                }
            }
        }
    }

    /** prctl(option, arg2, 0, 0, 0). */
    public static void prctlSet(int option, long arg2, String what) throws NativeException {
        try {
            prctl(option, arg2, 0, 0, 0);
        } catch (LastErrorException e) {
            throw new NativeException(what, e.getErrorCode());
        }
    }

    public static int socketFd(int domain, int type, int protocol, String what) throws NativeException {
        try {
            return socket(domain, type | SOCK_CLOEXEC, protocol);
        } catch (LastErrorException e) {
            throw new NativeException(what, e.getErrorCode());
        }
    }

    public static void bindFd(int fd, byte[] sockaddr, String what) throws NativeException {
        try {
            bind(fd, sockaddr, sockaddr.length);
        } catch (LastErrorException e) {
            throw new NativeException(what, e.getErrorCode());
        }
    }

    /** One datagram (netlink message) out. */
    public static void sendMessage(int fd, byte[] msg, String what) throws NativeException {
        while (true) {
            try {
                send(fd, msg, msg.length, 0);
                return;
            } catch (LastErrorException e) {
                if (e.getErrorCode() != Errno.EINTR) {
                    throw new NativeException(what, e.getErrorCode());
                }
            }
        }
    }

    /** One datagram in; returns its length. */
    public static int receiveMessage(int fd, byte[] buf, String what) throws NativeException {
        while (true) {
            try {
                return (int) recv(fd, buf, buf.length, 0);
            } catch (LastErrorException e) {
                if (e.getErrorCode() != Errno.EINTR) {
                    throw new NativeException(what, e.getErrorCode());
                }
            }
        }
    }
}
