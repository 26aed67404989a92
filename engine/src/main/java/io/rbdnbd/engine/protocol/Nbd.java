package io.rbdnbd.engine.protocol;

/** Constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md). */
public final class Nbd {
    private Nbd() {
    }

    // Transmission phase
    public static final int REQUEST_MAGIC = 0x25609513;
    public static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    public static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;
    public static final int REQUEST_HEADER_SIZE = 28;
    public static final int SIMPLE_REPLY_HEADER_SIZE = 16;
    public static final int STRUCTURED_REPLY_HEADER_SIZE = 20;

    // Commands
    public static final int CMD_READ = 0;
    public static final int CMD_WRITE = 1;
    public static final int CMD_DISC = 2;
    public static final int CMD_FLUSH = 3;
    public static final int CMD_TRIM = 4;
    public static final int CMD_CACHE = 5;
    public static final int CMD_WRITE_ZEROES = 6;
    public static final int CMD_BLOCK_STATUS = 7;

    // Command flags
    public static final int CMD_FLAG_FUA = 1;
    public static final int CMD_FLAG_NO_HOLE = 1 << 1;
    public static final int CMD_FLAG_DF = 1 << 2;
    public static final int CMD_FLAG_REQ_ONE = 1 << 3;
    public static final int CMD_FLAG_FAST_ZERO = 1 << 4;

    // Transmission flags
    public static final int FLAG_HAS_FLAGS = 1;
    public static final int FLAG_READ_ONLY = 1 << 1;
    public static final int FLAG_SEND_FLUSH = 1 << 2;
    public static final int FLAG_SEND_FUA = 1 << 3;
    public static final int FLAG_ROTATIONAL = 1 << 4;
    public static final int FLAG_SEND_TRIM = 1 << 5;
    public static final int FLAG_SEND_WRITE_ZEROES = 1 << 6;
    public static final int FLAG_SEND_DF = 1 << 7;
    public static final int FLAG_CAN_MULTI_CONN = 1 << 8;
    public static final int FLAG_SEND_CACHE = 1 << 10;
    public static final int FLAG_SEND_FAST_ZERO = 1 << 11;

    // Structured reply chunk types and flags
    public static final int REPLY_FLAG_DONE = 1;
    public static final int REPLY_TYPE_NONE = 0;
    public static final int REPLY_TYPE_OFFSET_DATA = 1;
    public static final int REPLY_TYPE_OFFSET_HOLE = 2;
    public static final int REPLY_TYPE_BLOCK_STATUS = 5;
    public static final int REPLY_TYPE_ERROR = (1 << 15) + 1;

    // base:allocation extent flags
    public static final int STATE_HOLE = 1;
    public static final int STATE_ZERO = 2;

    // Errors (on the wire; Linux values)
    public static final int EPERM = 1;
    public static final int EIO = 5;
    public static final int ENOMEM = 12;
    public static final int EINVAL = 22;
    public static final int ENOSPC = 28;
    public static final int EOVERFLOW = 75;
    public static final int ENOTSUP = 95;
    public static final int ESHUTDOWN = 108;

    // Handshake
    public static final long NBDMAGIC = 0x4e42444d41474943L; // "NBDMAGIC"
    public static final long IHAVEOPT = 0x49484156454F5054L; // "IHAVEOPT"
    public static final long OPTION_REPLY_MAGIC = 0x3e889045565a9L;
    public static final int HANDSHAKE_FLAG_FIXED_NEWSTYLE = 1;
    public static final int HANDSHAKE_FLAG_NO_ZEROES = 1 << 1;
    public static final int CLIENT_FLAG_FIXED_NEWSTYLE = 1;
    public static final int CLIENT_FLAG_NO_ZEROES = 1 << 1;

    public static final int OPT_EXPORT_NAME = 1;
    public static final int OPT_ABORT = 2;
    public static final int OPT_LIST = 3;
    public static final int OPT_STARTTLS = 5;
    public static final int OPT_INFO = 6;
    public static final int OPT_GO = 7;
    public static final int OPT_STRUCTURED_REPLY = 8;
    public static final int OPT_LIST_META_CONTEXT = 9;
    public static final int OPT_SET_META_CONTEXT = 10;

    public static final int REP_ACK = 1;
    public static final int REP_SERVER = 2;
    public static final int REP_INFO = 3;
    public static final int REP_META_CONTEXT = 4;
    public static final int REP_ERR_UNSUP = (1 << 31) + 1;
    public static final int REP_ERR_POLICY = (1 << 31) + 2;
    public static final int REP_ERR_INVALID = (1 << 31) + 3;
    public static final int REP_ERR_TLS_REQD = (1 << 31) + 5;
    public static final int REP_ERR_UNKNOWN = (1 << 31) + 6;
    public static final int REP_ERR_TOO_BIG = (1 << 31) + 9;

    public static final int INFO_EXPORT = 0;
    public static final int INFO_NAME = 1;
    public static final int INFO_DESCRIPTION = 2;
    public static final int INFO_BLOCK_SIZE = 3;

    public static final String META_CONTEXT_BASE_ALLOCATION = "base:allocation";
    /** The one meta context id we hand out (base:allocation). */
    public static final int BASE_ALLOCATION_CONTEXT_ID = 1;

    /**
     * The error to send for a failure with {@code errno}: NBD allows only the values above, and a
     * client treats any other as EINVAL, which would misreport e.g. a timed-out cluster.
     */
    public static int wireError(int errno) {
        return switch (errno) {
            case EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP -> errno;
            case 30 -> EPERM; // EROFS: the image refuses writes
            case 122 -> ENOSPC; // EDQUOT: pool quota
            default -> EIO; // ESHUTDOWN too: from a backend it means blocklisted, not "server going away"
        };
    }

    public static String commandName(int type) {
        return switch (type) {
            case CMD_READ -> "READ";
            case CMD_WRITE -> "WRITE";
            case CMD_DISC -> "DISC";
            case CMD_FLUSH -> "FLUSH";
            case CMD_TRIM -> "TRIM";
            case CMD_CACHE -> "CACHE";
            case CMD_WRITE_ZEROES -> "WRITE_ZEROES";
            case CMD_BLOCK_STATUS -> "BLOCK_STATUS";
            default -> "CMD_" + type;
        };
    }
}
